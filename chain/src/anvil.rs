//! Starting and stopping anvil, Foundry's local chain: the devnet's chains and every chain test run
//! on it.
//!
//! anvil writes its log to a file (never to a pipe that nobody drains), and the address it listens
//! on is read from that log, so port 0 gives each chain a free port without races.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the anvil binary to use, ahead of every other place.
pub const ANVIL_ENV: &str = "BIGFILE_ANVIL";

/// How long anvil may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why anvil could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum AnvilError {
    /// No anvil binary was found.
    #[error(
        "anvil not found: set {ANVIL_ENV}, put anvil on PATH, or run packaging/chain-deps.sh \
         (installs chain/contracts/bin/anvil); looked in {0}"
    )]
    NotFound(String),
    /// Spawning or talking to the process failed.
    #[error("anvil ({what}): {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// anvil exited or stayed silent before it listened.
    #[error("anvil did not start ({why}); its log {log}:\n{tail}")]
    Start {
        /// What went wrong.
        why: String,
        /// The log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
}

/// How to run one anvil chain.
#[derive(Debug, Clone)]
pub struct AnvilOptions {
    /// The chain id it reports.
    pub chain_id: u64,
    /// Seconds between blocks; `None` mines a block per transaction only.
    pub block_time: Option<u64>,
    /// TCP port; 0 picks a free one.
    pub port: u16,
    /// State file loaded at start (when present) and written at exit and every few seconds, so a
    /// chain stopped and started again keeps its blocks and contracts.
    pub state: Option<PathBuf>,
    /// Where anvil's own log goes.
    pub log: PathBuf,
    /// More command-line arguments (e.g. `--no-mining`, `--base-fee`).
    pub extra_args: Vec<String>,
}

impl AnvilOptions {
    /// A chain with `chain_id`, logging to `log`, on a free port, one block per transaction.
    pub fn new(chain_id: u64, log: impl Into<PathBuf>) -> Self {
        Self { chain_id, block_time: None, port: 0, state: None, log: log.into(), extra_args: Vec::new() }
    }
}

/// A running anvil process. Dropping it stops the process unless [`Anvil::detach`] was called.
#[derive(Debug)]
pub struct Anvil {
    child: Option<Child>,
    pid: u32,
    port: u16,
    chain_id: u64,
    options: AnvilOptions,
}

impl Anvil {
    /// Starts anvil and waits until it listens.
    pub fn spawn(options: AnvilOptions) -> Result<Self, AnvilError> {
        let binary = find_anvil()?;
        let log = File::create(&options.log)
            .map_err(|source| AnvilError::Io { what: format!("create {}", options.log.display()), source })?;
        let log_err =
            log.try_clone().map_err(|source| AnvilError::Io { what: "clone log handle".into(), source })?;
        let mut command = Command::new(&binary);
        command
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(options.port.to_string())
            .arg("--chain-id")
            .arg(options.chain_id.to_string())
            // Few pre-funded accounts: the devnet makes and funds its own keys.
            .arg("--accounts")
            .arg("1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(seconds) = options.block_time {
            command.arg("--block-time").arg(seconds.to_string());
        }
        if let Some(state) = &options.state {
            command.arg("--state").arg(state).arg("--state-interval").arg("2");
        }
        command.args(&options.extra_args);
        let child = command
            .spawn()
            .map_err(|source| AnvilError::Io { what: format!("spawn {}", binary.display()), source })?;
        let mut anvil =
            Self { pid: child.id(), child: Some(child), port: 0, chain_id: options.chain_id, options };
        anvil.port = anvil.wait_listening()?;
        Ok(anvil)
    }

    fn wait_listening(&mut self) -> Result<u16, AnvilError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&self.options.log).unwrap_or_default();
            if let Some(port) = listening_port(&text) {
                return Ok(port);
            }
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(format!("exited with {status}")),
                Some(Err(e)) => Some(format!("wait failed: {e}")),
                _ => None,
            };
            let why = exited.or_else(|| {
                (Instant::now() > deadline).then(|| format!("no listening address after {START_TIMEOUT:?}"))
            });
            if let Some(why) = why {
                self.kill();
                return Err(AnvilError::Start { why, log: self.options.log.clone(), tail: tail(&text, 20) });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The HTTP JSON-RPC endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The chain id it reports.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The options it was started with (the port as chosen).
    pub fn options(&self) -> AnvilOptions {
        AnvilOptions { port: self.port, ..self.options.clone() }
    }

    /// Stops the process (SIGTERM, so a state file is written, then SIGKILL after 5 s) and waits
    /// for it.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        terminate(self.pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts anvil again with the same options and port (after [`Anvil::kill`]); with a state file
    /// the chain goes on where it stopped.
    pub fn restart(&mut self) -> Result<(), AnvilError> {
        self.kill();
        let mut fresh = Self::spawn(self.options())?;
        self.child = fresh.child.take();
        self.pid = fresh.pid;
        self.port = fresh.port;
        Ok(())
    }

    /// Records that the chain now mines every `seconds` (set over RPC with `evm_setIntervalMining`),
    /// so a restart keeps doing so.
    pub fn set_block_time(&mut self, seconds: Option<u64>) {
        self.options.block_time = seconds;
    }

    /// Leaves the process running after this handle is dropped (`devnet up`); stop it later by pid.
    pub fn detach(mut self) -> u32 {
        self.child = None;
        self.pid
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGTERM to `pid` (anvil writes its state file on it).
pub fn terminate(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// Whether a process with `pid` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn listening_port(log: &str) -> Option<u16> {
    log.lines()
        .find_map(|line| line.trim().strip_prefix("Listening on "))
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|port| port.trim().parse().ok())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Finds anvil: `$BIGFILE_ANVIL`, then `chain/contracts/bin/anvil` under the current directory or
/// above the running executable (a checkout's `target/*/`), then `anvil` on `PATH`.
pub fn find_anvil() -> Result<PathBuf, AnvilError> {
    let mut looked = Vec::new();
    if let Some(path) = std::env::var_os(ANVIL_ENV) {
        return Ok(PathBuf::from(path));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    for root in roots {
        let candidate = root.join("chain/contracts/bin/anvil");
        let npm = root.join("chain/contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        if candidate.is_file() && npm.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("anvil");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    looked.push("PATH".into());
    Err(AnvilError::NotFound(looked.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_port_from_the_log() {
        let log = "Genesis Number\n==================\n\n0\n\nListening on 127.0.0.1:39915\n";
        assert_eq!(listening_port(log), Some(39915));
        assert_eq!(listening_port("Genesis Number\n"), None);
    }
}
