//! HTTP calls to DTR and UCP, made with `curl` on a cluster node (in CI the runner often
//! reaches the cluster only by SSH), never from the control machine.
//!
//! Every call has `--fail` (an HTTP error is curl's exit 22, never a success), TLS verified
//! against the service's CA (`--cacert`), or `--insecure` only when the inventory says so.
//! The URL, method, body and credentials travel in a curl config file (`-K`, curl's
//! `docs/cmdline-opts/config.d`) written from stdin into the script's private directory,
//! so no secret is on any argv.

use super::error::DtrError;
use super::params::Params;

/// How a node trusts a service's TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    /// The CA's PEM, sent to the node with the call.
    Ca(String),
    /// Fetched from `<url>/ca` on the node first (what the DTR docs do: "Download the UCP
    /// TLS CA certificate from https://<ucp-url>/ca"), trusted from then on.
    Fetch,
    /// Any certificate (`--insecure`; for the bootstrapper `--ucp-insecure-tls`).
    Insecure,
    /// Nothing configured: only a publicly trusted certificate passes.
    System,
}

impl Trust {
    /// The trust that parameter `ca` (a PEM, a file on the control machine holding one, or
    /// `fetch`) and the switch `insecure` give.
    pub fn from_params(p: &Params, ca: &str, insecure: &str) -> Result<Trust, DtrError> {
        if p.flag(insecure) {
            return Ok(Trust::Insecure);
        }
        let Some(value) = p.text(ca).map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Trust::System);
        };
        if value == "fetch" {
            return Ok(Trust::Fetch);
        }
        if value.starts_with("-----BEGIN") {
            return Ok(Trust::Ca(format!("{value}\n")));
        }
        let text = std::fs::read_to_string(value).map_err(|e| {
            DtrError::Input(format!(
                "`{ca}` is neither a PEM, `fetch`, nor a readable file: `{value}`: {e}"
            ))
        })?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(DtrError::Input(format!(
                "`{ca}` names `{value}`, which holds no PEM certificate"
            )));
        }
        Ok(Trust::Ca(text))
    }
}

/// A service (UCP or DTR) as seen from a node: its base URL and how it is trusted.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    /// `ucp` or `dtr`: names the CA file.
    pub name: &'static str,
    /// `https://host[:port]`, no trailing slash.
    pub url: String,
    pub trust: Trust,
}

impl Service {
    pub fn new(name: &'static str, url: &str, trust: Trust) -> Service {
        let url = url.trim().trim_end_matches('/');
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("https://{url}")
        };
        Service { name, url, trust }
    }

    /// The host of the URL, without port.
    pub fn host(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    }

    fn ca_file(&self) -> String {
        format!("{}-ca.pem", self.name)
    }
}

/// A shell script for one node, with the files it reads from stdin.
#[derive(Debug, Default)]
pub(crate) struct NodeScript {
    pub files: Vec<(String, String)>,
    pub lines: Vec<String>,
    calls: usize,
}

impl NodeScript {
    /// Makes `svc`'s CA available as `$CAPSTAN_DIR/<name>-ca.pem` (sent, or fetched) and
    /// returns the curl arguments that trust it.
    pub fn trust(&mut self, svc: &Service) -> String {
        let file = svc.ca_file();
        if self.files.iter().any(|(f, _)| *f == file)
            || self.lines.iter().any(|l| l.contains(&file))
        {
            return tls_args(svc);
        }
        match &svc.trust {
            Trust::Ca(pem) => self.files.push((file, pem.clone())),
            Trust::Fetch => self.lines.push(format!(
                "curl --fail -sS --insecure -o \"$CAPSTAN_DIR/{file}\" {} || exit $?",
                quote(&format!("{}/ca", svc.url))
            )),
            Trust::Insecure | Trust::System => {}
        }
        tls_args(svc)
    }

    /// Adds `curl` for `req` against `svc`; its config goes to a file of its own. Returns
    /// the command (for `$(...)` or a line of its own).
    pub fn curl(&mut self, svc: &Service, req: &Request) -> String {
        let tls = self.trust(svc);
        self.calls += 1;
        let config = format!("call-{}", self.calls);
        let mut text = format!("url = \"{}\"\n", curl_escape(&req.url(svc)));
        if req.method != "GET" {
            text.push_str(&format!("request = \"{}\"\n", req.method));
        }
        if let Some((user, secret)) = &req.basic {
            text.push_str(&format!(
                "user = \"{}\"\n",
                curl_escape(&format!("{user}:{secret}"))
            ));
        }
        if let Some(body) = &req.json {
            text.push_str("header = \"Content-Type: application/json\"\n");
            text.push_str(&format!("data-binary = \"{}\"\n", curl_escape(body)));
        }
        for (k, v) in &req.form {
            text.push_str(&format!(
                "form = \"{}={}\"\n",
                curl_escape(k),
                curl_escape(v)
            ));
        }
        self.files.push((config.clone(), text));
        let resolve = req
            .local_port
            .map(|port| {
                format!(
                    " --resolve {}",
                    quote(&format!("{}:{port}:127.0.0.1", svc.host()))
                )
            })
            .unwrap_or_default();
        let bearer = if req.bearer {
            " -K \"$CAPSTAN_DIR/bearer\"".to_owned()
        } else {
            String::new()
        };
        format!("curl --fail -sS {tls}{resolve}{bearer} -K \"$CAPSTAN_DIR/{config}\"")
    }

    pub fn line(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    pub fn script(&self) -> String {
        self.lines.join("\n")
    }

    pub fn file_refs(&self) -> Vec<(&str, &str)> {
        self.files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_str()))
            .collect()
    }
}

fn tls_args(svc: &Service) -> String {
    match &svc.trust {
        Trust::Ca(_) | Trust::Fetch => format!("--cacert \"$CAPSTAN_DIR/{}\"", svc.ca_file()),
        Trust::Insecure => "--insecure".to_owned(),
        Trust::System => String::new(),
    }
}

/// One HTTP request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    pub method: &'static str,
    /// Path and query, from `/`.
    pub path: String,
    /// Basic auth: user and password or access token.
    pub basic: Option<(String, String)>,
    /// `Authorization: Bearer` from `$CAPSTAN_DIR/bearer` (written on the node by a login).
    pub bearer: bool,
    pub json: Option<String>,
    /// Multipart fields (`name`, `@file` or value).
    pub form: Vec<(String, String)>,
    /// Connect to this node's own replica on this HTTPS port (`--resolve host:port:127.0.0.1`).
    pub local_port: Option<u16>,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request {
            method: "GET",
            path: path.to_owned(),
            ..Request::default()
        }
    }

    fn url(&self, svc: &Service) -> String {
        match self.local_port {
            Some(port) => format!("https://{}:{port}{}", svc.host(), self.path),
            None => format!("{}{}", svc.url, self.path),
        }
    }
}

/// UCP login on the node: `POST /auth/login` → `auth_token`, kept in `$CAPSTAN_DIR/bearer`
/// as a curl config line; the token never leaves the node.
pub(crate) fn ucp_login(s: &mut NodeScript, ucp: &Service, user: &str, password: &str) {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    let login = s.curl(
        ucp,
        &Request {
            method: "POST",
            path: "/auth/login".to_owned(),
            json: Some(body),
            ..Request::default()
        },
    );
    s.line(format!("answer=$({login}) || exit $?"));
    s.line(
        "token=$(printf '%s' \"$answer\" | sed -n 's/.*\"auth_token\" *: *\"\\([^\"]*\\)\".*/\\1/p')",
    );
    s.line(
        "[ -n \"$token\" ] || { echo 'UCP /auth/login answered without an auth_token' >&2; \
         exit 65; }",
    );
    s.line("printf 'header = \"Authorization: Bearer %s\"\\n' \"$token\" >\"$CAPSTAN_DIR/bearer\"");
}

/// A value for a double-quoted curl config string.
pub(crate) fn curl_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn quote(s: &str) -> String {
    crate::template::shell_quote(s).unwrap_or_else(|_| "''".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_to_config_files_not_the_command_line() {
        let ucp = Service::new("ucp", "https://ucp.example.com/", Trust::Ca("PEM\n".into()));
        let mut s = NodeScript::default();
        ucp_login(&mut s, &ucp, "admin", "pa\"ss");
        let version = s.curl(
            &ucp,
            &Request {
                bearer: true,
                ..Request::get("/version")
            },
        );
        let script = format!("{}\n{version}", s.script());
        assert!(!script.contains("pa"), "{script}");
        assert!(script.contains("curl --fail -sS --cacert \"$CAPSTAN_DIR/ucp-ca.pem\" -K"));
        let login = &s
            .files
            .iter()
            .find(|(n, _)| n == "call-1")
            .expect("config")
            .1;
        assert_eq!(
            login,
            "url = \"https://ucp.example.com/auth/login\"\nrequest = \"POST\"\nheader = \
             \"Content-Type: application/json\"\ndata-binary = \
             \"{\\\"password\\\":\\\"pa\\\\\\\"ss\\\",\\\"username\\\":\\\"admin\\\"}\"\n"
        );
        assert_eq!(s.files[0], ("ucp-ca.pem".to_owned(), "PEM\n".to_owned()));
    }

    #[test]
    fn local_calls_resolve_the_service_name_to_the_node() {
        let dtr = Service::new("dtr", "dtr.example.com:8443", Trust::Fetch);
        assert_eq!(dtr.host(), "dtr.example.com");
        let mut s = NodeScript::default();
        let ping = s.curl(
            &dtr,
            &Request {
                local_port: Some(4443),
                ..Request::get("/_ping")
            },
        );
        assert!(
            ping.contains("--resolve dtr.example.com:4443:127.0.0.1"),
            "{ping}"
        );
        assert!(
            s.lines[0].starts_with("curl --fail -sS --insecure -o \"$CAPSTAN_DIR/dtr-ca.pem\"")
        );
        assert!(
            s.files[0]
                .1
                .starts_with("url = \"https://dtr.example.com:4443/_ping\"")
        );
    }
}
