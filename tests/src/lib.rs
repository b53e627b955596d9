//! Shared helpers for the end-to-end tests: build-independent access to the `bigfile-agent`
//! binary, throw-away nodes made by the real `init`, and a tiny HTTP GET for the local API.
//!
//! Every e2e test uses these; none copies them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `bigfile-agent` binary built in the same target directory as the running test.
///
/// `make test` builds it (with the `fault-injection` feature) before running the tests;
/// `BIGFILE_AGENT_BIN` overrides the path.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BIGFILE_AGENT_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test> -> target/<profile>/bigfile-agent
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("bigfile-agent")).expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p bigfile-agent --features fault-injection` (make test does)",
        bin.display()
    );
    bin
}

/// A node directory made by `bigfile-agent init`, removed on drop.
pub struct Node {
    /// Holds the directory alive.
    pub dir: tempfile::TempDir,
    /// The node's config file.
    pub config: PathBuf,
}

impl Node {
    /// Initialises a node in a fresh temporary directory with the given API port.
    pub fn init(api_port: u16) -> Node {
        Self::init_in(tempfile::tempdir().expect("tempdir"), api_port)
    }

    /// Initialises a node in `dir` (for tests that need a special filesystem).
    pub fn init_in(dir: tempfile::TempDir, api_port: u16) -> Node {
        let pw = dir.path().join("password");
        std::fs::write(&pw, "test password\n").expect("password file");
        let node_dir = dir.path().join("node");
        let out = Command::new(agent_bin())
            .arg("init")
            .arg("--dir")
            .arg(&node_dir)
            .arg("--password-file")
            .arg(&pw)
            .arg("--api")
            .arg(format!("127.0.0.1:{api_port}"))
            .output()
            .expect("run init");
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        Node { config: node_dir.join("config.toml"), dir }
    }

    /// A command for this node: `bigfile-agent --config <config> <args>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(agent_bin());
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    /// Runs a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn bigfile-agent")
    }

    /// Runs a `--json` command that must succeed and returns its parsed output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(&a);
        assert!(
            out.status.success(),
            "bigfile-agent {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Starts `bigfile-agent run` for this node; the process is killed when the guard drops.
    pub fn spawn_run(&self) -> Daemon {
        Daemon(self.cmd(&["run"]).spawn().expect("spawn bigfile-agent run"))
    }

    /// Appends TOML to the node's config (tests use it to change settings).
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, f(text)).expect("write config");
    }

    /// Path inside the node's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A running agent process, killed on drop so a failing test leaves nothing behind.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub use bigfile_storage::bench::pseudo_random;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// HTTP GET on 127.0.0.1; returns (status code, body), or None if nothing listens yet.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}
