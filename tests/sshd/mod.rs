//! A real OpenSSH `sshd` for tests: its own port on 127.0.0.1, its own host key and
//! config in a temp dir, and a throwaway local user. Needs root (as CI runs) and the
//! `openssh-server` package (the test command installs it).
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The throwaway user the tests log in as.
pub const USER: &str = "opsgate-test";
pub const PASSWORD: &str = "opsgate-test-pw-1";
/// Passphrase of the generated client key.
pub const KEY_PASSPHRASE: &str = "key-passphrase-1";

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn ensure_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let exists = run(Command::new("id").arg(USER)).status.success();
        if !exists {
            let out = run(Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]));
            // Another test binary may have created it a moment ago.
            assert!(
                out.status.success() || run(Command::new("id").arg(USER)).status.success(),
                "useradd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        chpasswd
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{USER}:{PASSWORD}\n").as_bytes())
            .expect("write");
        assert!(chpasswd.wait().expect("wait").success(), "chpasswd failed");
        let _ = std::fs::create_dir_all("/run/sshd");
    });
}

/// Options for one sshd.
#[derive(Clone, Copy)]
pub struct SshdOptions {
    pub password_auth: bool,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            password_auth: true,
        }
    }
}

/// A running sshd; killed on drop.
pub struct Sshd {
    pub dir: TempDir,
    pub port: u16,
    pub opts: SshdOptions,
    child: Option<Child>,
    /// The client private key (OpenSSH format, encrypted with [`KEY_PASSPHRASE`]).
    pub client_key: String,
    /// Accounts allowed besides [`USER`] (e.g. fake network devices).
    pub extra_users: Vec<String>,
}

fn keygen(path: &Path, passphrase: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-f"])
        .arg(path));
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Sshd {
    pub fn start(opts: SshdOptions) -> Sshd {
        Sshd::start_with_users(opts, &[])
    }

    /// Starts an sshd that also lets `extra_users` log in (accounts the caller made).
    pub fn start_with_users(opts: SshdOptions, extra_users: &[&str]) -> Sshd {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "openssh-server is not installed (the test command installs it)"
        );
        ensure_user();
        let dir = tempfile::tempdir().expect("tempdir");
        keygen(&dir.path().join("host_ed25519"), "");
        let client = dir.path().join("client_ed25519");
        keygen(&client, KEY_PASSPHRASE);
        std::fs::copy(
            client.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let client_key = std::fs::read_to_string(&client).expect("client key");
        let mut s = Sshd {
            port: common_free_port(),
            dir,
            opts,
            child: None,
            client_key,
            extra_users: extra_users.iter().map(|u| u.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    fn spawn(&mut self) {
        let d = self.dir.path().display();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication {pw}\n\
             KbdInteractiveAuthentication yes\nUsePAM yes\nStrictModes no\nPermitRootLogin no\n\
             AllowUsers {USER} {extra}\nLogLevel ERROR\nMaxStartups 200\nMaxSessions 200\n",
            port = self.port,
            pw = yes_no(self.opts.password_auth),
            extra = self.extra_users.join(" "),
        );
        std::fs::write(self.config_path(), config).expect("sshd_config");
        let log = std::fs::File::create(self.dir.path().join("sshd.log")).expect("log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Stops the listener and every session it forked (as if the host died).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Per-connection sshd processes (and their shells) descend from the listener;
            // kill the whole tree so every TCP connection drops at once.
            for pid in descendants(c.id()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts on the same port with a brand-new host key.
    pub fn restart_with_new_host_key(&mut self) {
        self.kill();
        keygen(&self.dir.path().join("host_ed25519"), "");
        self.spawn();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn common_free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Every process below `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Field 4 (ppid) follows the parenthesised command name.
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a.to_string()) else {
                continue;
            };
            if let Some(ppid) = after
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (child, parent) in &parent_of {
            if *parent == p && !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}
