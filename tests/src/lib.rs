//! Shared helpers for the end-to-end tests: build-independent access to the `bigfile-agent`
//! binary, throw-away nodes made by the real `init`, and a tiny HTTP GET for the local API.
//!
//! Every e2e test uses these; none copies them.

pub mod chain;
pub mod hostile;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

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
    /// What `init --json` reported (peer_id, address, p2p_addrs, …).
    pub info: serde_json::Value,
    /// Environment variables every command of this node gets (fault injection, say).
    pub env: Vec<(String, String)>,
}

impl Node {
    /// Initialises a node in a fresh temporary directory with the given API port.
    pub fn init(api_port: u16) -> Node {
        Self::init_in(tempfile::tempdir().expect("tempdir"), api_port)
    }

    /// Initialises a node in `dir` (for tests that need a special filesystem).
    pub fn init_in(dir: tempfile::TempDir, api_port: u16) -> Node {
        let p2p = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        Self::init_with(dir, api_port, &["--listen", &p2p])
    }

    /// Initialises a node in `dir` with extra `init` arguments (`--listen`, `--bootstrap`, …).
    pub fn init_with(dir: tempfile::TempDir, api_port: u16, extra: &[&str]) -> Node {
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
            .args(extra)
            .arg("--json")
            .output()
            .expect("run init");
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let info = serde_json::from_slice(&out.stdout).expect("init --json output");
        Node { config: node_dir.join("config.toml"), dir, info, env: Vec::new() }
    }

    /// A command for this node: `bigfile-agent --config <config> <args>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(agent_bin());
        c.arg("--config").arg(&self.config).args(args).envs(self.env.iter().cloned());
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

    /// As [`Node::spawn_run`], with the daemon's log (stderr) appended to [`Node::log_path`].
    pub fn spawn_run_logged(&self) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the agent log");
        Daemon(self.cmd(&["run"]).stderr(log).spawn().expect("spawn bigfile-agent run"))
    }

    /// Where [`Node::spawn_run_logged`] writes the daemon's log.
    pub fn log_path(&self) -> PathBuf {
        self.path("agent.log")
    }

    /// Everything the logged daemon has written so far (empty if nothing).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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

/// A TCP port on 127.0.0.1 that nothing listens on and no other test (in any process) was given.
///
/// Ports handed out by the kernel for `bind(:0)` are released before the agent binds them, and
/// the kernel may hand the same one to the next caller, or to an outgoing connection, in that
/// window (CI saw two agents of one cluster given the same API port). So test ports come from
/// below the kernel's ephemeral range, where the kernel never picks on its own, and each one is
/// reserved machine-wide by creating a file in a shared directory; reservations expire after an
/// hour so a crashed run does not leak them for ever.
pub fn free_port() -> u16 {
    reserve_port(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// As [`free_port`], for a UDP port (QUIC); also free for TCP so either transport can use it.
pub fn free_udp_port() -> u16 {
    reserve_port(|p| {
        std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
    })
}

fn reserve_port(bindable: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Below the ephemeral range (32768–60999 on Debian); fall back to that if it cannot be read.
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u32>().ok()))
        .unwrap_or(32768);
    let (first, last) = (10_000u32, low.clamp(12_000, 65_000) - 1);
    let span = last - first + 1;
    let dir = std::env::temp_dir().join("bigfile-test-ports");
    std::fs::create_dir_all(&dir).expect("port reservation directory");
    // Spread processes over the range so they rarely probe the same ports.
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(97);
    for i in 0..span {
        let port = (first + seed.wrapping_add(i) % span) as u16;
        let file = dir.join(port.to_string());
        if let Ok(meta) = std::fs::metadata(&file) {
            let age = meta.modified().ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
            if age < Duration::from_secs(3600) {
                continue;
            }
            let _ = std::fs::remove_file(&file);
        }
        if std::fs::OpenOptions::new().write(true).create_new(true).open(&file).is_ok() && bindable(port) {
            return port;
        }
    }
    panic!("no free test port left in {first}..={last} (see {})", dir.display());
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

/// Polls `f` every 100 ms until it returns `Some`, panicking with `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One provider agent of a [`Cluster`].
pub struct Provider {
    /// Its node directory and config.
    pub node: Node,
    /// Its API port.
    pub api: u16,
    /// Its p2p address with `/p2p/PEERID`.
    pub addr: String,
    /// Its peer id.
    pub peer_id: String,
    /// The running process (None once killed).
    pub daemon: Option<Daemon>,
}

impl Provider {
    /// GETs a JSON document from its API.
    pub fn api_json(&self, path: &str) -> Option<serde_json::Value> {
        match http_get(self.api, path)? {
            (200, body) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// The value of counter `name` (e.g. `bigfile_chain_proofs_accepted_total`) in its /metrics.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) = http_get(self.api, "/metrics")?;
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Whether its process is still running.
    pub fn alive(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(|d| matches!(d.0.try_wait(), Ok(None)))
    }
}

/// N provider agents on 127.0.0.1, each with its own data dir and ports, plus a client node
/// that bootstraps to all of them. Every e2e network test starts its agents through this;
/// everything is killed and removed on drop.
pub struct Cluster {
    /// The providers, in start order.
    pub providers: Vec<Provider>,
    /// A client node (not running; its commands dial the providers).
    pub client: Node,
}

impl Cluster {
    /// Starts `n` providers (each bootstrapping to the ones before it), waits until every one
    /// knows all `n` providers' announcements, and makes a client node.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, |t| t)
    }

    /// As [`Cluster::start`], with `edit` applied to every provider's config before it starts.
    pub fn start_with(n: usize, edit: impl Fn(String) -> String) -> Cluster {
        Self::start_with_env(n, edit, &[])
    }

    /// As [`Cluster::start_with`], every provider process also getting the variables in `env`.
    pub fn start_with_env(n: usize, edit: impl Fn(String) -> String, env: &[(&str, &str)]) -> Cluster {
        Self::start_full(n, edit, env, None)
    }

    /// As [`Cluster::start_with`], on the devnet described by `devnet` (its `devnet.json`):
    /// provider `i` uses the devnet account `provider-{i+1}` and registers with `stake` BIG before
    /// its daemon starts; the client uses `client-1`.
    pub fn start_on_chain(n: usize, devnet: &Path, stake: &str, edit: impl Fn(String) -> String) -> Cluster {
        Self::start_full(n, edit, &[], Some((devnet, stake)))
    }

    fn start_full(
        n: usize,
        edit: impl Fn(String) -> String,
        env: &[(&str, &str)],
        chain: Option<(&Path, &str)>,
    ) -> Cluster {
        let devnet_args = |account: String| -> Vec<String> {
            match chain {
                Some((file, _)) => {
                    vec!["--devnet".into(), file.display().to_string(), "--account".into(), account]
                }
                None => Vec::new(),
            }
        };
        let mut providers: Vec<Provider> = Vec::new();
        for i in 0..n {
            let api = free_port();
            // The first provider speaks QUIC only, so every node dials it over QUIC; the rest TCP.
            let listen = if providers.is_empty() {
                format!("/ip4/127.0.0.1/udp/{}/quic-v1", free_udp_port())
            } else {
                format!("/ip4/127.0.0.1/tcp/{}", free_port())
            };
            let mut args = vec!["--listen".to_string(), listen.clone()];
            args.extend(devnet_args(format!("provider-{}", i + 1)));
            for p in &providers {
                args.push("--bootstrap".into());
                args.push(p.addr.clone());
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut node = Node::init_with(tempfile::tempdir().expect("tempdir"), api, &argv);
            node.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let id = node.info["peer_id"].as_str().expect("peer_id").to_string();
            node.edit_config(|t| {
                edit(
                    t.replace("announce_interval_secs = 30", "announce_interval_secs = 1")
                        .replace("announcement_max_age_secs = 300", "announcement_max_age_secs = 30"),
                )
            });
            if let Some((_, stake)) = chain {
                node.json(&["register", "--stake", stake]);
            }
            let daemon = node.spawn_run_logged();
            providers.push(Provider {
                node,
                api,
                addr: format!("{listen}/p2p/{id}"),
                peer_id: id,
                daemon: Some(daemon),
            });
        }
        let client_args = devnet_args("client-1".into());
        let client_argv: Vec<&str> = client_args.iter().map(String::as_str).collect();
        let mut c = Cluster {
            client: Node::init_with(tempfile::tempdir().expect("tempdir"), free_port(), &client_argv),
            providers,
        };
        let boots: Vec<String> = c.providers.iter().map(|p| p.addr.clone()).collect();
        c.client.edit_config(|t| {
            let list = boots.iter().map(|b| format!("{b:?}")).collect::<Vec<_>>().join(", ");
            t.replace("bootstrap = []", &format!("bootstrap = [{list}]"))
        });
        c.wait_all_know(n, Duration::from_secs(60));
        c
    }

    /// Waits until every live provider lists at least `n` providers.
    pub fn wait_all_know(&mut self, n: usize, limit: Duration) {
        for i in 0..self.providers.len() {
            if !self.providers[i].alive() {
                continue;
            }
            let p = &self.providers[i];
            wait_for(limit, &format!("provider {i} to know {n} providers"), || {
                let v = p.api_json("/peers")?;
                (v["providers"].as_array()?.len() >= n).then_some(())
            });
        }
    }

    /// SIGKILLs provider `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut d) = self.providers[i].daemon.take() {
            let _ = d.0.kill();
            let _ = d.0.wait();
        }
    }

    /// Starts provider `i` again (after [`Cluster::kill`]) on its own data dir and ports.
    pub fn restart(&mut self, i: usize) {
        assert!(!self.providers[i].alive(), "provider {i} is still running");
        let daemon = self.providers[i].node.spawn_run_logged();
        self.providers[i].daemon = Some(daemon);
        let p = &self.providers[i];
        wait_for(Duration::from_secs(30), &format!("provider {i} to serve its API again"), || {
            p.api_json("/status").map(|_| ())
        });
    }

    /// Runs a client `--json` command that must succeed.
    pub fn client_json(&self, args: &[&str]) -> serde_json::Value {
        self.client.json(args)
    }
}

/// How much of each agent's log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

impl Drop for Cluster {
    /// When a test fails with agents running, prints the end of every provider's log, so a
    /// CI failure shows what the agents were doing rather than only the assertion.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (i, p) in self.providers.iter().enumerate() {
            let log = p.node.log();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            eprintln!("----- provider {i} ({}) log, last {} lines -----", p.peer_id, lines.len() - from);
            for l in &lines[from..] {
                eprintln!("{l}");
            }
        }
    }
}
