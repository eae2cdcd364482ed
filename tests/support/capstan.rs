//! Runs the real `capstan` binary in a scratch project directory and checks what it did.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory holding an inventory, playbooks and templates.
pub struct Project {
    pub dir: tempfile::TempDir,
}

/// What one run of capstan printed and returned.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Both streams, for searching.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The recap line of `host`, e.g. `ok=1   changed=2 ...`.
    #[track_caller]
    pub fn recap(&self, host: &str) -> String {
        let after = self
            .stdout
            .split("RECAP\n")
            .nth(1)
            .unwrap_or_else(|| panic!("no RECAP in:\n{}", self.stdout));
        after
            .lines()
            .find(|l| l.split_whitespace().next() == Some(host))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no recap line for {host} in:\n{}", self.stdout))
    }

    /// The status line of `task` on `host` (`host | task | status (note)`).
    #[track_caller]
    pub fn line(&self, host: &str, task: &str) -> String {
        let needle = format!(" {host} | {task} | ");
        self.stdout
            .lines()
            .find(|l| l.contains(&needle))
            .map(|l| l[l.find(&needle).unwrap_or(0) + needle.len()..].to_owned())
            .unwrap_or_else(|| panic!("no line for {host} / {task} in:\n{}", self.stdout))
    }
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `rel` (creating parent directories) and returns its path.
    pub fn file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    /// Runs `capstan ARGS` in the project directory, with `CI=1` (plain output).
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut cmd = Command::new(binary());
        cmd.args(args).current_dir(self.dir.path()).env("CI", "1");
        cmd.env_remove("SSH_AUTH_SOCK");
        // Local-connection hosts keep their lock in this project, not in the real home.
        cmd.env("CAPSTAN_LOCK_DIR", self.path(".host-lock"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("capstan runs");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_capstan"))
}

impl Project {
    /// Writes `inventories/local.toml`: `hosts` on this machine (`connection = "local"`),
    /// each with `host_dir` under the project, and the cluster lock under the project too
    /// (`remote/lock`, so the hosts' audit log is `remote/audit.jsonl`). `settings` lines are
    /// added to `[settings]`, `vars` lines to `[vars]`.
    pub fn local_inventory(&self, hosts: &[&str], vars: &str, settings: &str) -> PathBuf {
        let root = self.dir.path().display();
        let mut text = format!(
            "[defaults]\nconnection = \"local\"\n\n[vars]\nhost_dir = \"{root}/hosts\"\n{vars}\n\n\
             [settings]\nlock_dir = \"{root}/remote/lock\"\n{settings}\n"
        );
        for h in hosts {
            text.push_str(&format!("\n[hosts.{h}]\n"));
        }
        self.file("inventories/local.toml", &text)
    }

    /// Starts `capstan ARGS` in the project directory (with `CI=1`) without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(binary())
            .args(args)
            .current_dir(self.dir.path())
            .env("CI", "1")
            .env_remove("SSH_AUTH_SOCK")
            .env("CAPSTAN_LOCK_DIR", self.path(".host-lock"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("capstan starts")
    }
}

/// Waits for a spawned capstan and collects what it printed.
pub fn finish(child: std::process::Child) -> Outcome {
    let out = child.wait_with_output().expect("capstan ends");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `cond` every 50 ms until it holds, failing after `secs` seconds.
#[track_caller]
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
