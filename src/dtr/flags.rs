//! Which flags each version of the bootstrapper (`docker/dtr:<v>`) accepts, per command,
//! and a check of a rendered `docker run` command against them.
//!
//! Sources (docker/docs, see docs/dtr.md): `datacenter/dtr/2.5/reference/cli/upgrade.md`,
//! `reference/dtr/2.6/cli/upgrade.md`, `reference/dtr/2.7/cli/upgrade.md` (only 2.6 has
//! `--no-image-check`); `reference/dtr/2.5/cli/join.md`, `reference/dtr/2.7/cli/join.md`
//! (2.6: Mirantis' `dtr-cli-join` page for the same line lists the same set);
//! `datacenter/dtr/2.4/reference/cli/remove.md`, `reference/dtr/2.6/cli/remove.md`,
//! `reference/dtr/2.7/cli/remove.md` (`--replica-id` is a "DEPRECATED alias for
//! --replica-ids"; 2.5 taken as its identical neighbours). Every flag has an environment
//! variable of the same meaning (the "Options" tables of the same pages).

use semver::Version;

use super::error::DtrError;

/// Flags of every command, with their environment variables.
const COMMON: &[(&str, &str)] = &[
    ("debug", "DEBUG"),
    ("existing-replica-id", "DTR_REPLICA_ID"),
    ("help-extended", "DTR_EXTENDED_HELP"),
    ("ucp-ca", "UCP_CA"),
    ("ucp-insecure-tls", "UCP_INSECURE_TLS"),
    ("ucp-password", "UCP_PASSWORD"),
    ("ucp-url", "UCP_URL"),
    ("ucp-username", "UCP_USERNAME"),
];

const JOIN: &[(&str, &str)] = &[
    ("replica-http-port", "REPLICA_HTTP_PORT"),
    ("replica-https-port", "REPLICA_HTTPS_PORT"),
    ("replica-id", "DTR_INSTALL_REPLICA_ID"),
    ("replica-rethinkdb-cache-mb", "RETHINKDB_CACHE_MB"),
    ("skip-network-test", "DTR_SKIP_NETWORK_TEST"),
    ("ucp-node", "UCP_NODE"),
    ("unsafe-join", "DTR_UNSAFE_JOIN"),
];

const REMOVE: &[(&str, &str)] = &[
    ("replica-ids", "DTR_REMOVE_REPLICA_IDS"),
    // "DEPRECATED alias for --replica-ids": accepted, never rendered by capstan.
    ("replica-id", "DTR_REMOVE_REPLICA_ID"),
];

const UPGRADE_26: &[(&str, &str)] = &[("no-image-check", "NO_IMAGE_CHECK")];

/// The flags of `command` in bootstrapper `version` beyond [`COMMON`]; `None` when the
/// table has no such command or version.
fn extra(version: &Version, command: &str) -> Option<&'static [(&'static str, &'static str)]> {
    if version.major != 2 || !(5..=7).contains(&version.minor) {
        return None;
    }
    match command {
        "upgrade" if version.minor == 6 => Some(UPGRADE_26),
        "upgrade" => Some(&[]),
        "join" => Some(JOIN),
        "remove" => Some(REMOVE),
        _ => None,
    }
}

/// Whether `command` of bootstrapper `version` accepts `--flag`.
pub(crate) fn accepts(version: &Version, command: &str, flag: &str) -> Option<bool> {
    let extra = extra(version, command)?;
    Some(COMMON.iter().chain(extra).any(|(f, _)| *f == flag))
}

fn flag_of_env(version: &Version, command: &str, var: &str) -> Option<&'static str> {
    let extra = extra(version, command)?;
    COMMON
        .iter()
        .chain(extra)
        .find(|(_, v)| *v == var)
        .map(|(f, _)| *f)
}

/// Checks a rendered bootstrapper command: no terminal (`-t`), no `--env NAME=value` (the
/// value would be on docker's argv), and every flag (given directly or through its
/// environment variable) known to the image's version.
pub(crate) fn check(command: &str) -> Result<(), DtrError> {
    let words = split_words(command);
    let Some(run) = words
        .windows(2)
        .position(|w| w[0] == "docker" && w[1] == "run")
    else {
        return Ok(());
    };
    let bad = |why: String| Err(DtrError::Input(format!("{why}, in `{command}`")));
    let mut i = run + 2;
    let mut env_names = Vec::new();
    while let Some(w) = words.get(i) {
        match w.as_str() {
            "--rm" | "-i" | "--interactive" => i += 1,
            "-t" | "--tty" | "-it" | "-ti" => {
                return bad(
                    "the bootstrapper runs without a terminal: docker refuses `-t` over a \
                     non-terminal stdin (\"the input device is not a TTY\")"
                        .to_owned(),
                );
            }
            "-e" | "--env" => {
                let v = words.get(i + 1).cloned().unwrap_or_default();
                if let Some((name, _)) = v.split_once('=') {
                    return bad(format!(
                        "`--env {name}=…` puts the value on docker's command line; pass `--env \
                         {name}` with the value in the environment, or `--env-file`"
                    ));
                }
                env_names.push(v);
                i += 2;
            }
            "--env-file" | "-v" | "--volume" | "--name" | "--network" => i += 2,
            w if w.starts_with('-') => return bad(format!("unexpected `docker run` option `{w}`")),
            _ => break,
        }
    }
    let Some(image) = words.get(i) else {
        return bad("no image".to_owned());
    };
    let Some(version) = image
        .rsplit_once(':')
        .and_then(|(_, tag)| Version::parse(tag).ok())
    else {
        return bad(format!("the image `{image}` has no version tag"));
    };
    let Some(sub) = words.get(i + 1) else {
        return bad("no bootstrapper command".to_owned());
    };
    if extra(&version, sub).is_none() {
        return bad(format!(
            "no flag table for `{sub}` of DTR {version} (capstan knows upgrade, join and \
             remove of DTR 2.5 to 2.7)"
        ));
    }
    for var in &env_names {
        if var == "UCP_PASSWORD" || flag_of_env(&version, sub, var).is_some() {
            continue;
        }
        return bad(format!(
            "`--env {var}` is no option of `{sub}` in DTR {version}"
        ));
    }
    for w in &words[i + 2..] {
        let Some(flag) = w.strip_prefix("--") else {
            continue;
        };
        let flag = flag.split_once('=').map_or(flag, |(f, _)| f);
        if flag == "ucp-password" {
            return bad(
                "`--ucp-password` puts the password on the command line; it travels in the \
                 env file"
                    .to_owned(),
            );
        }
        if accepts(&version, sub, flag) != Some(true) {
            return bad(format!(
                "DTR {version}'s `{sub}` has no flag `--{flag}` (the bootstrapper would stop \
                 with \"flag provided but not defined: -{flag}\")"
            ));
        }
    }
    Ok(())
}

/// Splits shell words, undoing the quoting capstan renders (`'…'`, `"…"`, `\x`).
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|_| Version::new(0, 0, 0))
    }

    #[test]
    fn no_image_check_exists_only_in_2_6_upgrade() {
        assert_eq!(
            accepts(&v("2.6.8"), "upgrade", "no-image-check"),
            Some(true)
        );
        assert_eq!(
            accepts(&v("2.5.3"), "upgrade", "no-image-check"),
            Some(false)
        );
        assert_eq!(
            accepts(&v("2.7.2"), "upgrade", "no-image-check"),
            Some(false)
        );
        assert_eq!(accepts(&v("2.7.2"), "join", "ucp-node"), Some(true));
        assert_eq!(accepts(&v("2.7.2"), "remove", "replica-ids"), Some(true));
        assert_eq!(accepts(&v("2.8.0"), "remove", "replica-ids"), None);
    }

    #[test]
    fn checks_rendered_commands() {
        let ok = "docker run --rm --env-file \"$CAPSTAN_SECRET_FILE\" --env UCP_CA \
                  docker/dtr:2.7.2 join --ucp-node 'node b' --ucp-url https://u \
                  --ucp-username admin --existing-replica-id aaa";
        assert!(check(ok).is_ok());
        let bad = |cmd: &str| {
            check(cmd)
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default()
        };
        assert!(
            bad("docker run --rm docker/dtr:2.7.2 upgrade --no-image-check")
                .contains("DTR 2.7.2's `upgrade` has no flag `--no-image-check`")
        );
        assert!(check("docker run --rm docker/dtr:2.6.8 upgrade --no-image-check").is_ok());
        assert!(bad("docker run -it --rm docker/dtr:2.7.2 upgrade").contains("TTY"));
        assert!(
            bad("docker run --env UCP_PASSWORD=x docker/dtr:2.7.2 upgrade").contains("--env-file")
        );
        assert!(
            bad("docker run --rm docker/dtr:2.7.2 remove --ucp-password x").contains("password")
        );
        assert!(bad("docker run --rm docker/dtr:2.7.2 images").contains("no flag table"));
    }

    #[test]
    fn splits_quoted_words() {
        assert_eq!(
            split_words("a 'b c' \"d\\\"e\" f\\ g"),
            ["a", "b c", "d\"e", "f g"]
        );
    }
}
