//! A real `ssh-agent` for one test, on its own socket, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fleet::run;

pub struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    /// Starts `ssh-agent -D -a DIR/agent.sock` and waits for its socket.
    pub fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ssh-agent (install openssh-client): {e}"));
        let mut agent = Agent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !agent.socket.exists() {
            if let Ok(Some(status)) = agent.child.try_wait() {
                panic!("ssh-agent exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        agent
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `ssh-add KEY` into this agent.
    pub fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
