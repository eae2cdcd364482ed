//! The SSH transport against real OpenSSH daemons (see `support::fleet`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan::inventory::{Host, HostKeyPolicy};
use capstan::transport::ssh::{SshSession, resolve};
use capstan::transport::{
    ConnectOptions, ExecControl, ExecOutput, ExecRequest, ExitStatus, Session, Stop, TransportError,
};

use crate::support::agent::Agent;
use crate::support::fleet::{Fleet, keygen, pub_of, run};

fn cmd(command: &str) -> ExecRequest {
    ExecRequest {
        command: command.into(),
        stdin: None,
        timeout: None,
    }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8 output")
}

async fn connect(host: &Host, opts: &ConnectOptions) -> SshSession {
    match SshSession::connect(host, opts).await {
        Ok(session) => session,
        Err(e) => panic!("connect to {}: {e}", host.name),
    }
}

async fn exec(session: &SshSession, command: &str) -> ExecOutput {
    session
        .exec(&cmd(command))
        .await
        .unwrap_or_else(|e| panic!("exec `{command}`: {e}"))
}

fn connect_error(result: Result<SshSession, TransportError>) -> TransportError {
    match result {
        Ok(_) => panic!("connected, but an error was expected"),
        Err(e) => e,
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test]
async fn exec_keeps_stdout_and_stderr_apart_with_exit_codes() {
    let fleet = Fleet::start(3);
    let opts = fleet.connect_options();
    let session = connect(&fleet.inventory_host(1), &opts).await;
    assert_eq!(session.target(), "host2");
    assert_eq!(
        session.host_key_fingerprint(),
        fleet.host_key_fingerprint(1)
    );

    let out = exec(
        &session,
        "echo out; echo err >&2; echo \"$NODE_NAME $HOST_DIR\"; exit 3",
    )
    .await;
    assert_eq!(
        text(&out.stdout),
        format!("out\nhost2 {}\n", fleet.host(1).state_dir.display())
    );
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(out.status, ExitStatus::Code(3));

    let out = exec(&session, "true").await;
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    // Output written after the exit status is decided still arrives.
    let out = exec(&session, "(sleep 0.3; echo late) & exit 0").await;
    assert_eq!(text(&out.stdout), "late\n");
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_execs_share_one_connection() {
    let fleet = Fleet::start(3);
    let session = Arc::new(connect(&fleet.inventory_host(0), &fleet.connect_options()).await);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let session = Arc::clone(&session);
        tasks.spawn(async move {
            let out = session
                .exec(&cmd(&format!("sleep 0.5; echo {i}; echo e{i} >&2")))
                .await;
            (i, out)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, out) = joined.expect("task");
        let out = out.unwrap_or_else(|e| panic!("exec {i}: {e}"));
        assert_eq!(text(&out.stdout), format!("{i}\n"));
        assert_eq!(text(&out.stderr), format!("e{i}\n"));
        assert!(out.status.success());
    }
    // One after another they would take 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(count(&fleet.sshd_log(0), "Accepted publickey"), 1);
}

#[tokio::test]
async fn stdin_is_delivered_then_closed() {
    let fleet = Fleet::start(3);
    let session = connect(&fleet.inventory_host(2), &fleet.connect_options()).await;
    let out = session
        .exec(&ExecRequest {
            command: "cat; echo done >&2".into(),
            stdin: Some(b"hello\nworld\n".to_vec()),
            timeout: None,
        })
        .await
        .expect("exec");
    assert_eq!(text(&out.stdout), "hello\nworld\n");
    assert_eq!(text(&out.stderr), "done\n");

    // More than the channel window, both ways at once.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| b"abcdefghij"[(i % 10) as usize])
        .collect();
    let out = session
        .exec(&ExecRequest {
            command: "cat".into(),
            stdin: Some(big.clone()),
            timeout: Some(Duration::from_secs(60)),
        })
        .await
        .expect("exec");
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.stdout == big);

    // No stdin: the command sees end of file at once.
    let out = exec(&session, "wc -c").await;
    assert_eq!(text(&out.stdout).trim(), "0");
}

#[tokio::test]
async fn unknown_host_key_is_refused_and_nothing_runs() {
    let fleet = Fleet::start(3);
    let empty = fleet.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let mut host = fleet.inventory_host(0);
    host.known_hosts = Some(empty.clone());

    let e = connect_error(SshSession::connect(&host, &fleet.connect_options()).await);
    match &e {
        TransportError::UnknownHostKey {
            host,
            algorithm,
            fingerprint,
            known_hosts,
        } => {
            assert!(host.contains("host1"), "{host}");
            assert_eq!(algorithm, "ssh-ed25519");
            assert_eq!(fingerprint, &fleet.host_key_fingerprint(0));
            assert_eq!(known_hosts, &empty);
        }
        other => panic!("expected UnknownHostKey, got {other:?}"),
    }
    assert!(e.is_host_key_problem());
    assert!(
        e.to_string().contains(&fleet.host_key_fingerprint(0)),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&empty).expect("read"), "");
    assert_eq!(count(&fleet.sshd_log(0), "Accepted"), 0);
}

#[tokio::test]
async fn changed_host_key_is_refused_with_file_and_line_whatever_the_policy() {
    let mut fleet = Fleet::start(3);
    fleet.rotate_host_key(1);
    for policy in [None, Some(HostKeyPolicy::AcceptNew)] {
        let mut host = fleet.inventory_host(1);
        host.host_key_checking = policy;
        let e = connect_error(SshSession::connect(&host, &fleet.connect_options()).await);
        match &e {
            TransportError::ChangedHostKey {
                fingerprint,
                known_hosts,
                line,
                ..
            } => {
                assert_eq!(fingerprint, &fleet.host_key_fingerprint(1));
                assert_eq!(known_hosts, fleet.known_hosts());
                assert_eq!(*line, 2, "host2 is the second line");
            }
            other => panic!("expected ChangedHostKey, got {other:?}"),
        }
        let message = e.to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains(&fleet.known_hosts().display().to_string()));
    }
    assert_eq!(count(&fleet.sshd_log(1), "Accepted"), 0);
}

#[tokio::test]
async fn accept_new_records_the_key_then_strict_checking_passes() {
    let fleet = Fleet::start(3);
    let known_hosts = fleet.dir().join("new/dir/known_hosts");
    let mut host = fleet.inventory_host(2);
    host.known_hosts = Some(known_hosts.clone());
    host.host_key_checking = Some(HostKeyPolicy::AcceptNew);
    let session = connect(&host, &fleet.connect_options()).await;
    assert_eq!(
        text(&exec(&session, "echo $NODE_NAME").await.stdout),
        "host3\n"
    );
    session.close().await;

    let recorded = std::fs::read_to_string(&known_hosts).expect("known_hosts written");
    let h = fleet.host(2);
    let expected_start = format!("[{}]:{} ssh-ed25519 ", h.addr, h.port);
    assert!(recorded.starts_with(&expected_start), "{recorded}");
    assert_eq!(recorded.lines().count(), 1);

    host.host_key_checking = Some(HostKeyPolicy::Strict);
    let session = connect(&host, &fleet.connect_options()).await;
    session.close().await;
    // --accept-new-host-keys on a known host records nothing more.
    let opts = ConnectOptions {
        accept_new_host_keys: true,
        ..fleet.connect_options()
    };
    connect(&host, &opts).await.close().await;
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("read"),
        recorded
    );
}

#[tokio::test]
async fn hashed_known_hosts_entries_are_accepted() {
    let fleet = Fleet::start(3);
    let hashed = fleet.dir().join("hashed_known_hosts");
    std::fs::copy(fleet.known_hosts(), &hashed).expect("copy");
    run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&hashed));
    let text_now = std::fs::read_to_string(&hashed).expect("read");
    assert!(text_now.lines().all(|l| l.starts_with("|1|")), "{text_now}");

    let mut host = fleet.inventory_host(0);
    host.known_hosts = Some(hashed);
    let session = connect(&host, &fleet.connect_options()).await;
    assert_eq!(
        text(&exec(&session, "echo $NODE_NAME").await.stdout),
        "host1\n"
    );
}

#[tokio::test]
async fn a_stopped_host_fails_to_connect_quickly() {
    let mut fleet = Fleet::start(3);
    fleet.stop_host(2);
    let started = Instant::now();
    let e = connect_error(
        SshSession::connect(&fleet.inventory_host(2), &fleet.connect_options()).await,
    );
    assert!(matches!(e, TransportError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("host3"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts TCP connections, never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let fleet = Fleet::start(1);
    let mut host = fleet.inventory_host(0);
    host.address = Some("127.0.0.1".into());
    host.port = Some(port);
    host.connect_timeout = Some(Duration::from_secs(1));
    let started = Instant::now();
    let e = connect_error(SshSession::connect(&host, &fleet.connect_options()).await);
    assert!(
        matches!(e, TransportError::ConnectTimeout { after, .. } if after == Duration::from_secs(1)),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
}

#[tokio::test]
async fn a_hanging_command_times_out_and_is_killed() {
    let fleet = Fleet::start(3);
    let session = connect(&fleet.inventory_host(0), &fleet.connect_options()).await;
    // A unique duration marks this test's sleep in the process table.
    let marker = format!("30.{}{:06}", std::process::id(), rand_suffix());
    let pattern = format!("sleep {marker}");
    let started = Instant::now();
    let out = session
        .exec(&ExecRequest {
            command: format!("echo started; sleep {marker}; echo never"),
            stdin: None,
            timeout: Some(Duration::from_secs(1)),
        })
        .await
        .expect("exec");
    assert_eq!(out.status, ExitStatus::TimedOut(Duration::from_secs(1)));
    assert_eq!(text(&out.stdout), "started\n");
    assert_eq!(
        text(&out.stderr),
        "",
        "the process group report is not output"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = Command::new("pgrep")
            .arg("-f")
            .arg(&pattern)
            .output()
            .expect("pgrep");
        if !alive.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "`{pattern}` still runs; sshd log:\n{}",
            fleet.sshd_log(0)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection is still good, and a command within its timeout is untouched.
    let out = session
        .exec(&ExecRequest {
            command: "echo ok; echo err >&2; exit 4".into(),
            stdin: None,
            timeout: Some(Duration::from_secs(60)),
        })
        .await
        .expect("exec");
    assert_eq!((text(&out.stdout), text(&out.stderr)), ("ok\n", "err\n"));
    assert_eq!(out.status, ExitStatus::Code(4));
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_command_killed_by_a_signal_reports_it() {
    let fleet = Fleet::start(3);
    let session = connect(&fleet.inventory_host(0), &fleet.connect_options()).await;
    let out = exec(&session, "echo before; kill -TERM $$; echo after").await;
    assert_eq!(out.status, ExitStatus::Signal("TERM".into()));
    assert_eq!(text(&out.stdout), "before\n");
    let out = exec(&session, "kill -KILL $$").await;
    assert_eq!(out.status, ExitStatus::Signal("KILL".into()));
}

#[tokio::test]
async fn a_dropped_connection_is_reported_as_disconnected() {
    let fleet = Fleet::start(3);
    let session = connect(&fleet.inventory_host(0), &fleet.connect_options()).await;
    // The command's parent is the sshd process serving this connection.
    let e = session
        .exec(&cmd("kill -KILL $PPID; sleep 5"))
        .await
        .expect_err("the connection is gone");
    assert!(matches!(e, TransportError::Disconnected { .. }), "{e:?}");
    let e = session.exec(&cmd("true")).await.expect_err("still gone");
    assert!(matches!(e, TransportError::Disconnected { .. }), "{e:?}");
}

#[tokio::test]
async fn a_passphrase_protected_key_uses_key_passphrase() {
    let fleet = Fleet::start(3);
    let key = fleet.dir().join("id_locked");
    keygen(&key, "ed25519", "correct horse");
    fleet.authorize(&pub_of(&key));
    let opts = fleet.connect_options();

    let mut host = fleet.inventory_host(0);
    host.identity_files = vec![key.clone()];
    let e = connect_error(SshSession::connect(&host, &opts).await);
    match &e {
        TransportError::Auth { user, tried, .. } => {
            assert_eq!(user, "root");
            assert!(tried.contains(&key.display().to_string()), "{tried}");
            assert!(tried.contains("encrypted"), "{tried}");
        }
        other => panic!("expected Auth, got {other:?}"),
    }

    host.key_passphrase = Some("wrong".into());
    let e = connect_error(SshSession::connect(&host, &opts).await);
    assert!(e.to_string().contains("wrong `key_passphrase`"), "{e}");
    assert!(!e.to_string().contains("wrong\""), "never the secret: {e}");

    host.key_passphrase = Some("correct horse".into());
    let session = connect(&host, &opts).await;
    assert_eq!(
        text(&exec(&session, "echo $NODE_NAME").await.stdout),
        "host1\n"
    );
    assert!(!e.to_string().contains("correct horse"));
}

#[tokio::test]
async fn rsa_and_ecdsa_client_keys() {
    let fleet = Fleet::start(3);
    let opts = fleet.connect_options();
    for (i, kind) in ["rsa", "ecdsa"].into_iter().enumerate() {
        let key = fleet.dir().join(format!("id_{kind}"));
        keygen(&key, kind, "");
        fleet.authorize(&pub_of(&key));
        let mut host = fleet.inventory_host(i);
        host.identity_files = vec![key];
        let session = connect(&host, &opts).await;
        assert_eq!(
            text(&exec(&session, "echo $NODE_NAME").await.stdout),
            format!("host{}\n", i + 1)
        );
        let log = fleet.sshd_log(i);
        let shown = if kind == "rsa" {
            "RSA SHA256"
        } else {
            "ECDSA SHA256"
        };
        assert!(log.contains("Accepted publickey for root"), "{log}");
        assert!(log.contains(shown), "{log}");
    }
}

#[tokio::test]
async fn an_agent_key_is_used_when_no_identity_file_is_configured() {
    let fleet = Fleet::start(3);
    let key = fleet.dir().join("id_agent");
    keygen(&key, "ed25519", "");
    fleet.authorize(&pub_of(&key));
    let agent = Agent::start(fleet.dir());
    agent.add(&key);
    std::fs::remove_file(&key).expect("the key now lives only in the agent");

    let config = fleet.dir().join("agent_ssh_config");
    std::fs::write(
        &config,
        format!("Host *\n    IdentityAgent {}\n", agent.socket().display()),
    )
    .expect("write");
    let opts = ConnectOptions {
        ssh_config: Some(config),
        ..fleet.connect_options()
    };
    let mut host = fleet.inventory_host(1);
    host.identity_files.clear();
    let target = resolve(&host, &opts).expect("resolve");
    assert_eq!(target.agent.as_deref(), Some(agent.socket()));

    let session = connect(&host, &opts).await;
    assert_eq!(
        text(&exec(&session, "echo $NODE_NAME").await.stdout),
        "host2\n"
    );
}

/// ssh_config for ProxyJump tests: `bastion` is host1.
fn bastion_config(fleet: &Fleet, known_hosts: &Path) -> std::path::PathBuf {
    let h = fleet.host(0);
    let path = fleet.dir().join(format!(
        "jump_config_{}",
        known_hosts
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x")
    ));
    std::fs::write(
        &path,
        format!(
            "Host bastion\n    HostName {}\n    Port {}\n    User root\n    IdentityFile {}\n    \
             UserKnownHostsFile {}\n\nHost *\n    IdentityAgent none\n",
            h.addr,
            h.port,
            fleet.client_key().display(),
            known_hosts.display()
        ),
    )
    .expect("write");
    path
}

#[tokio::test]
async fn proxy_jump_through_one_sshd_to_another() {
    let fleet = Fleet::start(3);
    let opts = ConnectOptions {
        ssh_config: Some(bastion_config(&fleet, fleet.known_hosts())),
        ..fleet.connect_options()
    };
    let mut host = fleet.inventory_host(1);
    host.proxy_jump = vec!["bastion".into()];
    let target = resolve(&host, &opts).expect("resolve");
    assert_eq!(target.jumps.len(), 1);
    assert_eq!(target.jumps[0].hostname, fleet.host(0).addr.to_string());

    let session = connect(&host, &opts).await;
    assert_eq!(
        text(&exec(&session, "echo $NODE_NAME").await.stdout),
        "host2\n"
    );
    assert_eq!(
        session.host_key_fingerprint(),
        fleet.host_key_fingerprint(1)
    );
    session.close().await;
    assert_eq!(count(&fleet.sshd_log(0), "Accepted publickey"), 1);
    assert_eq!(count(&fleet.sshd_log(1), "Accepted publickey"), 1);

    // The hop's host key is checked too.
    let empty = fleet.dir().join("empty");
    std::fs::write(&empty, "").expect("write");
    let opts_unknown_hop = ConnectOptions {
        ssh_config: Some(bastion_config(&fleet, &empty)),
        ..fleet.connect_options()
    };
    let e = connect_error(SshSession::connect(&host, &opts_unknown_hop).await);
    match &e {
        TransportError::UnknownHostKey {
            host, known_hosts, ..
        } => {
            assert!(host.contains("bastion"), "{host}");
            assert_eq!(known_hosts, &empty);
        }
        other => panic!("expected UnknownHostKey for the hop, got {other:?}"),
    }

    // host2 does not forward: a hop through it fails with a clear error.
    let mut via_host2 = fleet.inventory_host(2);
    let h2 = fleet.host(1);
    via_host2.proxy_jump = vec![format!("root@{}:{}", h2.addr, h2.port)];
    let e = connect_error(SshSession::connect(&via_host2, &fleet.connect_options()).await);
    assert!(
        matches!(&e, TransportError::Connect { reason, .. } if reason.contains("would not forward") && reason.contains(&h2.addr.to_string())),
        "{e:?}"
    );
}

#[test]
fn ssh_config_resolution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "\
Host web*
    User deploy
    Port 2200

Host web1
    HostName 10.1.2.3
    IdentityFile /keys/web
    ProxyJump bastion1,ops@bastion2:2022
    UserKnownHostsFile /kh/web
    StrictHostKeyChecking accept-new
    ConnectTimeout 7

Host bastion1
    HostName 192.0.2.1
    User jump
    IdentityFile /keys/jump

Host db
    HostName %h.internal
    StrictHostKeyChecking no
    HostKeyAlias db-cluster

Match host nothing
    User never

Host *
    User fallback
    IdentityAgent none
",
    )
    .expect("write");
    let opts = ConnectOptions {
        ssh_config: Some(config.clone()),
        ..ConnectOptions::default()
    };
    let host = |name: &str| Host {
        name: name.into(),
        address: None,
        port: None,
        user: None,
        identity_files: Vec::new(),
        known_hosts: None,
        connect_timeout: None,
        command_timeout: None,
        connection: capstan::inventory::ConnectionKind::Ssh,
        host_key_checking: None,
        proxy_jump: Vec::new(),
        password: None,
        key_passphrase: Some("s3cret".into()),
        become_password: None,
        vars: Default::default(),
        groups: Vec::new(),
        line: 0,
    };

    let web1 = resolve(&host("web1"), &opts).expect("resolve web1");
    assert_eq!(web1.hostname, "10.1.2.3");
    assert_eq!(web1.user, "deploy", "first match wins, as in OpenSSH");
    assert_eq!(web1.port, 2200);
    assert_eq!(
        web1.identity_files,
        vec![Path::new("/keys/web").to_path_buf()]
    );
    assert_eq!(web1.known_hosts, Path::new("/kh/web"));
    assert_eq!(web1.host_key_name, "[10.1.2.3]:2200");
    assert_eq!(web1.host_key_policy, HostKeyPolicy::AcceptNew);
    assert_eq!(web1.connect_timeout, Duration::from_secs(7));
    assert_eq!(web1.agent, None);
    assert!(
        !format!("{web1:?}").contains("s3cret"),
        "secrets stay out of Debug"
    );
    assert_eq!(
        web1.notes.len(),
        1,
        "the skipped Match block: {:?}",
        web1.notes
    );

    let [b1, b2] = &web1.jumps[..] else {
        panic!("two hops expected: {:?}", web1.jumps)
    };
    assert_eq!(
        (b1.hostname.as_str(), b1.port, b1.user.as_str()),
        ("192.0.2.1", 22, "jump")
    );
    assert_eq!(
        b1.identity_files,
        vec![Path::new("/keys/jump").to_path_buf()]
    );
    assert_eq!(
        b1.known_hosts,
        Path::new("/kh/web"),
        "inherited from the target"
    );
    assert_eq!(
        (b2.hostname.as_str(), b2.port, b2.user.as_str()),
        ("bastion2", 2022, "ops")
    );
    assert_eq!(
        b2.identity_files, web1.identity_files,
        "inherited from the target"
    );

    // The inventory wins where both speak.
    let mut inv = host("web1");
    inv.address = Some("10.9.9.9".into());
    inv.port = Some(22);
    inv.user = Some("root".into());
    inv.identity_files = vec!["/inv/key".into()];
    inv.known_hosts = Some("/inv/known_hosts".into());
    inv.connect_timeout = Some(Duration::from_secs(3));
    inv.host_key_checking = Some(HostKeyPolicy::Strict);
    inv.proxy_jump = vec!["none".into()];
    let r = resolve(&inv, &opts).expect("resolve");
    assert_eq!(
        (r.hostname.as_str(), r.port, r.user.as_str()),
        ("10.9.9.9", 22, "root")
    );
    assert_eq!(r.identity_files, vec![Path::new("/inv/key").to_path_buf()]);
    assert_eq!(r.known_hosts, Path::new("/inv/known_hosts"));
    assert_eq!(r.host_key_name, "10.9.9.9");
    assert_eq!(r.host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(r.connect_timeout, Duration::from_secs(3));
    assert!(r.jumps.is_empty());

    // `StrictHostKeyChecking no` never turns checking off.
    let db = resolve(&host("db"), &opts).expect("resolve db");
    assert_eq!(db.hostname, "db.internal");
    assert_eq!(db.user, "fallback");
    assert_eq!(db.host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(db.host_key_name, "db-cluster");
    assert!(
        db.notes
            .iter()
            .any(|n| n.contains("StrictHostKeyChecking no")),
        "{:?}",
        db.notes
    );
    // ... and --accept-new-host-keys is the way to record new hosts.
    let accept = ConnectOptions {
        accept_new_host_keys: true,
        ..opts.clone()
    };
    assert_eq!(
        resolve(&host("db"), &accept)
            .expect("resolve")
            .host_key_policy,
        HostKeyPolicy::AcceptNew
    );

    // Unknown to ssh_config: the name is the address, defaults apply.
    let other = resolve(&host("10.0.0.7"), &opts).expect("resolve");
    assert_eq!((other.hostname.as_str(), other.port), ("10.0.0.7", 22));
    assert_eq!(other.connect_timeout, Duration::from_secs(10));
    assert!(other.jumps.is_empty());

    let missing = ConnectOptions {
        ssh_config: Some(dir.path().join("nope")),
        ..ConnectOptions::default()
    };
    let e = resolve(&host("x"), &missing).expect_err("missing -F file");
    assert!(e.to_string().contains("nope"), "{e}");
}

/// `cargo test --test integration -- --ignored --nocapture connect_100`: connects to 100
/// daemons at once and runs a command on each, printing the timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: starts 100 daemons"]
async fn connect_100_hosts_in_parallel() {
    let fleet = Fleet::start(100);
    let opts = fleet.connect_options();
    let mut alone = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let session = connect(&fleet.inventory_host(0), &opts).await;
        exec(&session, "true").await;
        alone.push(t0.elapsed());
        session.close().await;
    }
    alone.sort();
    eprintln!("one host alone: connect + exec median {:?}", alone[2]);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..fleet.hosts().len() {
        let (host, opts) = (fleet.inventory_host(i), opts.clone());
        tasks.spawn(async move {
            let t0 = Instant::now();
            let session = SshSession::connect(&host, &opts).await?;
            let connected = t0.elapsed();
            let out = session.exec(&cmd("echo $NODE_NAME")).await?;
            let t1 = Instant::now();
            session.exec(&cmd("true")).await?;
            let second = t1.elapsed();
            session.close().await;
            Ok::<_, TransportError>((connected, second, out))
        });
    }
    let (mut connects, mut execs) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (connected, second, out) = joined.expect("task").expect("host");
        assert!(out.status.success());
        connects.push(connected);
        execs.push(second);
    }
    let total = started.elapsed();
    connects.sort();
    execs.sort();
    eprintln!(
        "100 hosts: all connected and ran 2 commands in {total:?}; connect median {:?} max {:?}; \
         one exec on an open connection median {:?} max {:?}",
        connects[50], connects[99], execs[50], execs[99]
    );
}

/// A session on host 1 of `fleet`, or on this machine (`connection = "local"`).
async fn session_for(fleet: &Fleet, local: bool) -> Session {
    let mut host = fleet.inventory_host(0);
    if local {
        host.connection = capstan::inventory::ConnectionKind::Local;
    }
    match Session::connect(&host, &fleet.connect_options()).await {
        Ok(s) => s,
        Err(e) => panic!("connect: {e}"),
    }
}

/// Processes whose arguments contain `pattern`, zombies excluded (`pgrep -f` sees no zombie:
/// a zombie has no arguments).
fn running(pattern: &str) -> bool {
    Command::new("pgrep")
        .arg("-f")
        .arg(pattern)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Waits up to `within` for no process to match `pattern`.
async fn gone_within(pattern: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while running(pattern) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn control(stop: &tokio::sync::watch::Receiver<Stop>, grace: Duration) -> ExecControl {
    ExecControl {
        stop: Some(stop.clone()),
        grace,
        ..ExecControl::default()
    }
}

/// Runs `command` until it has started (it touches `started`), then asks it to stop at
/// `level`; returns how it ended and how long it took after the stop request.
async fn stop_while_running(
    session: &Session,
    started: &Path,
    command: String,
    level: Stop,
    grace: Duration,
) -> (ExitStatus, Duration) {
    let (tx, rx) = tokio::sync::watch::channel(Stop::Continue);
    let req = ExecRequest {
        command,
        stdin: None,
        timeout: Some(Duration::from_secs(60)),
    };
    let ctl = control(&rx, grace);
    let exec = session.exec_with(&req, &ctl);
    let trigger = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !started.exists() {
            assert!(Instant::now() < deadline, "the command never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.send(level).expect("send stop");
        Instant::now()
    };
    let (out, asked) = tokio::join!(exec, trigger);
    let out = out.expect("exec");
    (out.status, asked.elapsed())
}

async fn cancellation_on(local: bool) {
    let fleet = Fleet::start(1);
    let session = session_for(&fleet, local).await;
    let dir = fleet.host(0).state_dir.clone();
    let grace = Duration::from_secs(2);
    for (case, level, ignores_term) in [
        ("term", Stop::Terminate, false),
        ("grace", Stop::Terminate, true),
        ("kill", Stop::Kill, true),
    ] {
        let marker = format!("30.{}{:06}", std::process::id(), rand_suffix());
        let started = dir.join(format!("started-{case}-{local}"));
        let trap = if ignores_term { "trap '' TERM; " } else { "" };
        let command = format!(
            "{trap}touch '{}'; sleep {marker} & sleep {marker}; echo never",
            started.display()
        );
        let (status, took) = stop_while_running(&session, &started, command, level, grace).await;
        assert_eq!(status, ExitStatus::Cancelled, "{case}");
        let limit = match (level, ignores_term) {
            (Stop::Terminate, true) => grace + Duration::from_secs(2),
            _ => Duration::from_millis(1500),
        };
        assert!(took < limit, "{case}: took {took:?}");
        if ignores_term && level == Stop::Terminate {
            assert!(
                took >= grace - Duration::from_millis(200),
                "{case}: {took:?}"
            );
        }
        assert!(
            gone_within(&format!("sleep {marker}"), Duration::from_secs(1)).await,
            "{case}: the command's process group outlived the cancellation"
        );
    }
    // A run already stopping starts nothing.
    let (tx, rx) = tokio::sync::watch::channel(Stop::Continue);
    tx.send(Stop::Terminate).expect("send");
    let never = dir.join(format!("never-{local}"));
    let out = session
        .exec_with(
            &cmd(&format!("touch '{}'", never.display())),
            &control(&rx, grace),
        )
        .await
        .expect("exec");
    assert_eq!(out.status, ExitStatus::Cancelled);
    assert!(!never.exists());
    // The session still works for commands outside the stopped run.
    let out = session.exec(&cmd("echo ok")).await.expect("exec");
    assert_eq!(text(&out.stdout), "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_command_ends_within_its_grace_period_over_ssh() {
    cancellation_on(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_command_ends_within_its_grace_period_on_the_local_connection() {
    cancellation_on(true).await;
}

async fn bounded_output_on(local: bool) {
    let fleet = Fleet::start(1);
    let session = session_for(&fleet, local).await;
    let ctl = ExecControl {
        output_limit: 1000,
        ..ExecControl::default()
    };
    let out = session
        .exec_with(
            &cmd("head -c 3000000 /dev/zero | tr '\\000' o; head -c 5000 /dev/zero | tr '\\000' e >&2; exit 3"),
            &ctl,
        )
        .await
        .expect("exec");
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(out.stdout, vec![b'o'; 1000]);
    assert_eq!(out.stderr, vec![b'e'; 1000]);
    assert_eq!(out.stdout_dropped(), 3_000_000 - 1000);
    assert_eq!(out.stderr_dropped(), 4000);
    // Under the limit, nothing is cut.
    let out = session
        .exec_with(&cmd("echo small"), &ctl)
        .await
        .expect("exec");
    assert_eq!((text(&out.stdout), out.stdout_dropped()), ("small\n", 0));
}

#[tokio::test]
async fn output_past_the_limit_is_counted_and_dropped_over_ssh() {
    bounded_output_on(false).await;
}

#[tokio::test]
async fn output_past_the_limit_is_counted_and_dropped_on_the_local_connection() {
    bounded_output_on(true).await;
}

#[tokio::test]
async fn the_exec_argument_is_the_same_short_bootstrap_for_every_command() {
    let mut fleet = Fleet::start(1);
    let log = fleet.record_commands(0);
    let session = connect(&fleet.inventory_host(0), &fleet.connect_options()).await;
    let secret = format!("argv-secret-{}", rand_suffix());
    for command in [format!("echo {secret}"), "echo other".to_owned()] {
        let out = session
            .exec(&ExecRequest {
                command,
                stdin: Some(secret.clone().into_bytes()),
                timeout: None,
            })
            .await
            .expect("exec");
        assert!(out.status.success());
    }
    let argv = std::fs::read_to_string(fleet.argv_log(0)).expect("recorded");
    let args: Vec<&str> = argv.split("\n--- end of command ---\n").collect();
    assert_eq!(args.len(), 3, "{argv}");
    assert_eq!(args[0], args[1], "the same text every time");
    assert!(args[0].len() < 700);
    assert!(!argv.contains(&secret), "{argv}");
    // The command itself came on the channel; its stdin was not recorded with it.
    let commands = std::fs::read_to_string(&log).expect("recorded");
    assert!(commands.starts_with(&format!("echo {secret}\n--- end of command ---\n")));
    assert_eq!(commands.matches(&secret).count(), 1, "{commands}");
}
