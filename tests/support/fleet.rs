//! A fleet of real OpenSSH daemons on loopback addresses, one fleet per test.
//!
//! Each host is an `sshd -D` child process with its own directory, Ed25519 host key,
//! config, log, `state/` (`$HOST_DIR`) and `home/` (`$HOME`). Hosts get distinct
//! 127.x.y.z addresses (per process and per fleet) and share one free port. Dropping the
//! fleet kills and reaps every daemon, also when the test panicked.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use capstan::inventory::{ConnectionKind, Host};
use capstan::transport::ConnectOptions;
use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";
/// Generous: the machine is small and shared.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Next host number in this process; with the pid it picks distinct addresses.
static NEXT_HOST: AtomicU32 = AtomicU32::new(0);

/// One daemon of the fleet.
#[derive(Debug, Clone)]
pub struct FleetHost {
    /// `host1`, `host2`, ...: `$NODE_NAME` on the host and its inventory name.
    pub name: String,
    pub addr: Ipv4Addr,
    pub port: u16,
    /// The daemon's own directory (config, keys, log).
    pub dir: PathBuf,
    /// `$HOST_DIR` of commands run there.
    pub state_dir: PathBuf,
    /// `$HOME` of commands run there.
    pub home: PathBuf,
    /// `AllowTcpForwarding yes` (host1 only): usable as a ProxyJump host.
    pub forwarding: bool,
    /// More `SetEnv` variables for commands run there (e.g. `PATH` with a simulator).
    pub env: Vec<(String, String)>,
    /// Every command sshd is asked to run is appended to this file (`ForceCommand`).
    pub record: Option<PathBuf>,
}

impl FleetHost {
    pub fn host_key_pub(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key.pub")
    }

    fn host_key(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key")
    }

    fn config(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.addr, self.port))
    }
}

pub struct Fleet {
    dir: TempDir,
    hosts: Vec<FleetHost>,
    daemons: Vec<Option<Child>>,
    client_key: PathBuf,
    known_hosts: PathBuf,
    authorized_keys: PathBuf,
    ssh_config: PathBuf,
}

impl Fleet {
    /// Starts `n` daemons and waits until each accepts connections.
    pub fn start(n: usize) -> Fleet {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: these tests run real OpenSSH daemons; install them with \
             `apt-get install -y --no-install-recommends openssh-server openssh-client`"
        );
        // Privilege separation needs it; the package creates it only at boot.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");

        let dir = tempfile::Builder::new()
            .prefix("capstan-fleet-")
            .tempdir()
            .expect("create the fleet directory");
        let root = dir.path().to_path_buf();
        let client_key = root.join("client_key");
        keygen(&client_key, "ed25519", "");
        let authorized_keys = root.join("authorized_keys");
        std::fs::copy(pub_of(&client_key), &authorized_keys).expect("write authorized_keys");
        // Hermetic client settings: no ssh-agent of the developer's session.
        let ssh_config = root.join("ssh_config");
        std::fs::write(&ssh_config, "Host *\n    IdentityAgent none\n").expect("write ssh_config");

        let port = free_port();
        let mut hosts = Vec::with_capacity(n);
        for i in 1..=n {
            let name = format!("host{i}");
            let host_dir = root.join("hosts").join(&name);
            let host = FleetHost {
                name,
                addr: next_addr(),
                port,
                state_dir: host_dir.join("state"),
                home: host_dir.join("home"),
                dir: host_dir,
                forwarding: i == 1,
                env: Vec::new(),
                record: None,
            };
            for d in [&host.dir, &host.state_dir, &host.home] {
                std::fs::create_dir_all(d).expect("create host directories");
            }
            keygen(&host.host_key(), "ed25519", "");
            std::fs::write(host.config(), sshd_config(&host, &authorized_keys))
                .expect("write sshd_config");
            hosts.push(host);
        }

        let known_hosts = root.join("known_hosts");
        let mut lines = String::new();
        for host in &hosts {
            let _ = writeln!(
                lines,
                "[{}]:{} {}",
                host.addr,
                host.port,
                key_line(&host.host_key_pub())
            );
        }
        std::fs::write(&known_hosts, lines).expect("write known_hosts");

        let mut fleet = Fleet {
            dir,
            daemons: (0..hosts.len()).map(|_| None).collect(),
            hosts,
            client_key,
            known_hosts,
            authorized_keys,
            ssh_config,
        };
        for i in 0..n {
            fleet.spawn(i);
        }
        for i in 0..n {
            fleet.wait_ready(i);
        }
        fleet
    }

    pub fn hosts(&self) -> &[FleetHost] {
        &self.hosts
    }

    pub fn host(&self, i: usize) -> &FleetHost {
        &self.hosts[i]
    }

    /// The fleet's directory, for a test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Private key every host accepts (unencrypted Ed25519).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// `[addr]:port key` for every host, as started.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// An ssh_config for the client that keeps the developer's agent out of tests.
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// Connect options using [`Fleet::ssh_config`]; non-interactive.
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            ssh_config: Some(self.ssh_config.clone()),
            accept_new_host_keys: false,
            interactive: false,
        }
    }

    /// Lets the key whose public half is `pub_file` log in to every host.
    pub fn authorize(&self, pub_file: &Path) {
        let line = std::fs::read_to_string(pub_file).expect("read public key");
        let mut all = std::fs::read_to_string(&self.authorized_keys).expect("read authorized_keys");
        all.push_str(&line);
        // Written beside and renamed over, so that an sshd reading it never sees half a file.
        let next = self.authorized_keys.with_extension("next");
        std::fs::write(&next, all).expect("write authorized_keys");
        std::fs::rename(&next, &self.authorized_keys).expect("replace authorized_keys");
    }

    /// Inventory `Host` for host `i`: user root, the client key, the fleet's known_hosts.
    pub fn inventory_host(&self, i: usize) -> Host {
        let h = &self.hosts[i];
        Host {
            name: h.name.clone(),
            address: Some(h.addr.to_string()),
            port: Some(h.port),
            user: Some("root".into()),
            identity_files: vec![self.client_key.clone()],
            known_hosts: Some(self.known_hosts.clone()),
            connect_timeout: Some(Duration::from_secs(20)),
            command_timeout: None,
            connection: ConnectionKind::Ssh,
            host_key_checking: None,
            proxy_jump: Vec::new(),
            password: None,
            key_passphrase: None,
            become_password: None,
            vars: Default::default(),
            groups: Vec::new(),
            line: 0,
        }
    }

    /// A TOML inventory for the whole fleet, in capstan's inventory format.
    pub fn inventory_toml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "[defaults]");
        let _ = writeln!(out, "user = \"root\"");
        let _ = writeln!(out, "identity_file = {}", toml_str(&self.client_key));
        let _ = writeln!(out, "known_hosts = {}", toml_str(&self.known_hosts));
        for h in &self.hosts {
            let _ = writeln!(out, "\n[hosts.{}]", h.name);
            let _ = writeln!(out, "address = \"{}\"", h.addr);
            let _ = writeln!(out, "port = {}", h.port);
            let _ = writeln!(out, "vars = {{ host_dir = {} }}", toml_str(&h.state_dir));
        }
        out
    }

    /// Writes [`Fleet::inventory_toml`] to `path`.
    pub fn write_inventory(&self, path: &Path) {
        std::fs::write(path, self.inventory_toml()).expect("write inventory");
    }

    /// Kills host `i`'s daemon (open connections keep their own sshd processes).
    pub fn stop_host(&mut self, i: usize) {
        if let Some(mut child) = self.daemons[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts host `i`'s daemon again and waits for it.
    pub fn restart_host(&mut self, i: usize) {
        self.stop_host(i);
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Gives host `i` a new host key and restarts it; [`Fleet::known_hosts`] keeps the old one.
    pub fn rotate_host_key(&mut self, i: usize) {
        self.stop_host(i);
        let key = self.hosts[i].host_key();
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(pub_of(&key));
        keygen(&key, "ed25519", "");
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Adds `KEY=VALUE` to the environment of commands on host `i` and restarts it.
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        self.hosts[i].env.retain(|(k, _)| k != key);
        self.hosts[i].env.push((key.to_owned(), value.to_owned()));
        self.reconfigure(i);
    }

    /// Records every command host `i` is asked to run into `commands.log` in the host's own
    /// directory (outside `$HOST_DIR`), through a `ForceCommand` wrapper; restarts it.
    ///
    /// capstan's exec argument is a fixed bootstrap that reads the command from stdin after
    /// a `<command bytes> <stdin bytes>` header line (see `transport::frame`): the wrapper
    /// records that command (not its stdin, which may hold secrets), then hands the same
    /// bytes, and the rest of the channel, to the bootstrap.
    pub fn record_commands(&mut self, i: usize) -> PathBuf {
        let log = self.hosts[i].dir.join("commands.log");
        let wrapper = self.hosts[i].dir.join("record.sh");
        let argv_log = self.argv_log(i);
        std::fs::write(
            &wrapper,
            RECORDING_WRAPPER
                .replace("@LOG@", &log.display().to_string())
                .replace("@ARGV@", &argv_log.display().to_string()),
        )
        .expect("write the recording wrapper");
        run(Command::new("chmod").arg("755").arg(&wrapper));
        self.hosts[i].record = Some(wrapper);
        self.reconfigure(i);
        log
    }

    /// With [`Fleet::record_commands`]: the exec argument of each command, as sshd got it.
    pub fn argv_log(&self, i: usize) -> PathBuf {
        self.hosts[i].dir.join("argv.log")
    }

    fn reconfigure(&mut self, i: usize) {
        std::fs::write(
            self.hosts[i].config(),
            sshd_config(&self.hosts[i], &self.authorized_keys),
        )
        .expect("write sshd_config");
        self.restart_host(i);
    }

    /// Host `i`'s sshd log (LogLevel VERBOSE).
    pub fn sshd_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.hosts[i].log()).unwrap_or_default()
    }

    /// `SHA256:...` of host `i`'s current host key, as `ssh-keygen -l` prints it.
    pub fn host_key_fingerprint(&self, i: usize) -> String {
        let out = run(Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.hosts[i].host_key_pub()));
        out.split_whitespace()
            .nth(1)
            .expect("ssh-keygen -l output")
            .to_owned()
    }

    fn spawn(&mut self, i: usize) {
        let host = &self.hosts[i];
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(host.config())
            .arg("-E")
            .arg(host.log())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
        self.daemons[i] = Some(child);
    }

    /// Polls a TCP connect until the daemon listens; fails fast if it exited.
    fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + READY_WITHIN;
        let addr = self.hosts[i].socket_addr();
        loop {
            if let Some(child) = self.daemons[i].as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "sshd of {} exited ({status}) at start; its log:\n{}",
                    self.hosts[i].name,
                    self.sshd_log(i)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd of {} did not listen on {addr} within {READY_WITHIN:?}; its log:\n{}",
                self.hosts[i].name,
                self.sshd_log(i)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.daemons.len() {
            self.stop_host(i);
        }
    }
}

/// See [`Fleet::record_commands`]. The bootstrap reads from a FIFO fed by a background
/// `cat` of the channel, so that it exits when it is done (a pipeline would wait for the
/// channel to end, which capstan only does when the command has ended).
const RECORDING_WRAPPER: &str = r#"#!/bin/sh
printf '%s\n--- end of command ---\n' "$SSH_ORIGINAL_COMMAND" >> '@ARGV@'
d=$(mktemp -d) || exit 125
IFS=' ' read -r n m || exit 125
head -c "$n" > "$d/command"
{ cat "$d/command"; printf '\n--- end of command ---\n'; } >> '@LOG@'
mkfifo "$d/in" || exit 125
exec 3<&0
{ printf '%s %s\n' "$n" "$m"; cat "$d/command"; exec cat <&3; } > "$d/in" &
feeder=$!
"${SHELL:-/bin/sh}" -c "$SSH_ORIGINAL_COMMAND" < "$d/in" 3<&-
rc=$?
kill $feeder 2>/dev/null
rm -rf "$d"
exit $rc
"#;

fn sshd_config(host: &FleetHost, authorized_keys: &Path) -> String {
    let forwarding = if host.forwarding { "yes" } else { "no" };
    let extra_env: String = host.env.iter().map(|(k, v)| format!(" {k}={v}")).collect();
    let force = host
        .record
        .as_ref()
        .map_or_else(String::new, |w| format!("ForceCommand {}\n", w.display()));
    format!(
        "# capstan test fleet: {name}
Port {port}
ListenAddress {addr}
AddressFamily inet
HostKey {key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 1000:30:1000
MaxSessions 1000
MaxAuthTries 10
LoginGraceTime 60
X11Forwarding no
AllowTcpForwarding {forwarding}
AllowAgentForwarding no
PermitTunnel no
PermitUserEnvironment no
SetEnv HOST_DIR={state} NODE_NAME={name} HOME={home}{extra_env}
{force}Subsystem sftp internal-sftp
LogLevel VERBOSE
# as the benchmark hosts (shared/bench/hosts.sh)
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com
",
        name = host.name,
        port = host.port,
        addr = host.addr,
        key = host.host_key().display(),
        dir = host.dir.display(),
        authorized_keys = authorized_keys.display(),
        state = host.state_dir.display(),
        home = host.home.display(),
    )
}

/// 127.A.B.C with A from the pid and B.C from a counter: parallel tests and test processes
/// do not share addresses (and stay clear of the benchmark's 127.0.0.x and 127.0.1.x).
fn next_addr() -> Ipv4Addr {
    let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
    let a = 64 + (std::process::id() % 160) as u8;
    Ipv4Addr::new(127, a, ((n / 250) % 256) as u8, (n % 250 + 2) as u8)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Generates a key pair at `path` (`type` as for `ssh-keygen -t`).
pub fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args([
        "-q",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        "capstan-test",
        "-f",
    ])
    .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    run(&mut cmd);
}

pub fn pub_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// `type base64` of a public key file, without its comment.
fn key_line(pub_file: &Path) -> String {
    let text = std::fs::read_to_string(pub_file).expect("read host public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn toml_str(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Runs a helper program; its failure fails the test with its stderr.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch project whose `inventory.toml` is the fleet's (plus `extra_inventory` TOML) and
/// whose `site.toml` is `playbook`.
pub fn project(
    fleet: &Fleet,
    extra_inventory: &str,
    playbook: &str,
) -> crate::support::capstan::Project {
    let p = crate::support::capstan::Project::new();
    p.file(
        "inventory.toml",
        &format!("{}\n{extra_inventory}", fleet.inventory_toml()),
    );
    p.file("site.toml", playbook);
    p
}

/// `capstan run site.toml -i inventory.toml -F <fleet ssh_config> EXTRA...` in `p`.
pub fn run_site(
    p: &crate::support::capstan::Project,
    fleet: &Fleet,
    extra: &[&str],
) -> crate::support::capstan::Outcome {
    let config = fleet.ssh_config().to_string_lossy().into_owned();
    let mut args = vec!["run", "site.toml", "-i", "inventory.toml", "-F", &config];
    args.extend_from_slice(extra);
    p.run(&args)
}
