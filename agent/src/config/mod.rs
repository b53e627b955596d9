//! The agent's one TOML file: plain serde types with defaults, strict parsing and `validate()`.
//!
//! Every error names the file, the line and the dotted key, e.g.
//! `config.toml:14: storage.parity: must be at least 1`.

mod chain;
mod compute;
mod size;
mod template;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use chain::{ChainConfig, DealDefaults};
pub use compute::ComputeConfig;
pub use size::ByteSize;
pub use template::{ChainInit, InitValues, render_default};

/// Default location of the configuration file of a packaged install.
pub const DEFAULT_PATH: &str = "/etc/bigfile-agent/config.toml";

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the node keeps its state and keys.
    pub node: NodeConfig,
    /// The local HTTP endpoint.
    pub api: ApiConfig,
    /// The shard store.
    pub storage: StorageConfig,
    /// The libp2p network.
    pub network: NetworkConfig,
    /// The BigFile chain: deals, proofs, rewards.
    pub chain: ChainConfig,
    /// Render and inference jobs.
    pub compute: ComputeConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[node]`: state directory, keys and shutdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// State directory; relative paths are relative to the config file's directory.
    pub data_dir: PathBuf,
    /// libp2p identity key file (relative to `data_dir`).
    pub identity: PathBuf,
    /// Encrypted chain keystore (relative to `data_dir`).
    pub keystore: PathBuf,
    /// File holding the keystore password; if unset, the systemd credential
    /// `keystore-password` is used.
    pub password_file: Option<PathBuf>,
    /// Seconds that shutdown may take before in-flight work is abandoned (it is checkpointed).
    pub shutdown_timeout_secs: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("/var/lib/bigfile-agent"),
            identity: PathBuf::from("identity.key"),
            keystore: PathBuf::from("keystore.json"),
            password_file: None,
            shutdown_timeout_secs: 10,
        }
    }
}

/// `[api]`: status, metrics and dashboard over HTTP on loopback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API at all.
    pub enabled: bool,
    /// Address to listen on; must be a loopback address.
    pub listen: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { enabled: true, listen: SocketAddr::from(([127, 0, 0, 1], 7460)) }
    }
}

/// `[storage]`: capacity and coding defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Most shard bytes this node will hold.
    pub capacity: ByteSize,
    /// Default data shards per stripe (k).
    pub data: u16,
    /// Default parity shards per stripe (m).
    pub parity: u16,
    /// Default object bytes per stripe (rounded up to a multiple of k).
    pub stripe_size: ByteSize,
    /// Proof segment size (power of two, 32 B to 1 KiB).
    pub segment_size: ByteSize,
    /// Size of a block stored in sled (power-of-two multiple of the segment size).
    pub block_size: ByteSize,
    /// sled page cache.
    pub cache_size: ByteSize,
    /// Free space always left on the filesystem; puts that could eat into it are refused.
    pub disk_reserve: ByteSize,
    /// Background scrubbing.
    pub scrub: ScrubConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            capacity: ByteSize(100 << 30),
            data: 4,
            parity: 2,
            stripe_size: ByteSize(1 << 20),
            segment_size: ByteSize(256),
            block_size: ByteSize(64 << 10),
            cache_size: ByteSize(256 << 20),
            disk_reserve: ByteSize(1 << 30),
            scrub: ScrubConfig::default(),
        }
    }
}

/// `[storage.scrub]`: how fast and how often every block is re-verified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Run the background scrubber.
    pub enabled: bool,
    /// Bytes verified per second at most.
    pub rate: ByteSize,
    /// Seconds to rest between complete passes.
    pub pause_secs: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig { enabled: true, rate: ByteSize(32 << 20), pause_secs: 3600 }
    }
}

/// `[network]`: libp2p addresses, announcements and the shard protocol's limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Join the network at all (`run` without it serves only the local API).
    pub enabled: bool,
    /// Multiaddrs to listen on (TCP and QUIC).
    pub listen: Vec<String>,
    /// Multiaddrs to announce besides the listen addresses (e.g. behind NAT with a port forward).
    pub external: Vec<String>,
    /// Peers to join through, each `MULTIADDR/p2p/PEERID`; re-dialled with back-off.
    pub bootstrap: Vec<String>,
    /// Seconds between availability announcements.
    pub announce_interval_secs: u64,
    /// Announcements older than this many seconds are dropped.
    pub announcement_max_age_secs: u64,
    /// Announcements stamped further than this many seconds in the future are refused.
    pub max_clock_skew_secs: u64,
    /// Most providers kept in the table.
    pub max_providers: usize,
    /// Largest shard accepted or sent in one message (bounds memory per request).
    pub max_shard_size: ByteSize,
    /// Seconds a request may take.
    pub request_timeout_secs: u64,
    /// Requests one peer may have in flight here.
    pub max_concurrent_per_peer: usize,
    /// The bulk shard port: `auto` (the first listen address's IP, a free port), `off` (every
    /// shard byte stays inside libp2p, both ways), or `HOST:PORT`.
    pub bulk_listen: String,
    /// Seconds a misbehaving peer stays banned.
    pub ban_secs: u64,
    /// Asking price, BIG base units per GiB-month of shard storage.
    pub price_per_gib_month: u64,
    /// Watching fellow holders and repairing lost shards.
    pub repair: RepairConfig,
}

/// `[network.repair]`: how holders watch each other and rebuild lost shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// Watch and repair at all.
    pub enabled: bool,
    /// Seconds between challenges to each fellow holder.
    pub interval_secs: u64,
    /// Seconds a holder may be unreachable or wrong before its shard is rebuilt elsewhere.
    pub grace_secs: u64,
    /// Seconds a repair lease lasts (the repairer must finish within it).
    pub lease_secs: u32,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig { enabled: true, interval_secs: 60, grace_secs: 600, lease_secs: 600 }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            listen: vec!["/ip4/0.0.0.0/tcp/7461".into(), "/ip4/0.0.0.0/udp/7461/quic-v1".into()],
            external: vec![],
            bootstrap: vec![],
            announce_interval_secs: 30,
            announcement_max_age_secs: 300,
            max_clock_skew_secs: 120,
            max_providers: 4096,
            max_shard_size: ByteSize(256 << 20),
            request_timeout_secs: 120,
            max_concurrent_per_peer: 4,
            bulk_listen: "auto".into(),
            ban_secs: 600,
            price_per_gib_month: 1_000_000_000_000_000,
            repair: RepairConfig::default(),
        }
    }
}

impl NetworkConfig {
    /// The parsed listen addresses (valid after `validate`).
    pub fn listen_addrs(&self) -> Vec<libp2p::Multiaddr> {
        self.listen.iter().filter_map(|a| a.parse().ok()).collect()
    }
    /// The parsed external addresses.
    pub fn external_addrs(&self) -> Vec<libp2p::Multiaddr> {
        self.external.iter().filter_map(|a| a.parse().ok()).collect()
    }
    /// Where the bulk shard port listens (None: off, or `auto` with no IP listen address), and
    /// whether downloads may use providers' bulk ports (all but `off`).
    pub fn bulk(&self) -> (Option<std::net::SocketAddr>, bool) {
        match self.bulk_listen.as_str() {
            "off" => (None, false),
            "auto" => {
                let ip = self.listen_addrs().iter().find_map(crate::net::bulk::ip_in);
                (ip.map(|ip| std::net::SocketAddr::new(ip, 0)), true)
            }
            at => (at.parse().ok(), true),
        }
    }
    /// The parsed bootstrap addresses.
    pub fn bootstrap_addrs(&self) -> Vec<libp2p::Multiaddr> {
        self.bootstrap.iter().filter_map(|a| a.parse().ok()).collect()
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `bigfile_storage=debug,info`, …
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into() }
    }
}

/// One problem found in a config, located by dotted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `storage.parity`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// A config file that cannot be used; lists every problem with file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source} (create one with `bigfile-agent init`)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Syntax, types or values are wrong.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl Config {
    /// Checks ranges and cross-field rules; returns every problem, not just the first.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: String| p.push(Problem { key: key.into(), message });
        let s = &self.storage;
        if s.data == 0 {
            bad("storage.data", "must be at least 1".into());
        }
        if s.parity == 0 {
            bad("storage.parity", "must be at least 1".into());
        }
        if u32::from(s.data) + u32::from(s.parity) > 256 {
            bad(
                "storage.parity",
                format!("data + parity must be at most 256 (is {})", u32::from(s.data) + u32::from(s.parity)),
            );
        }
        if s.capacity.0 == 0 {
            bad("storage.capacity", "must be greater than 0".into());
        }
        let seg = s.segment_size.0;
        if !seg.is_power_of_two() || !(32..=1024).contains(&seg) {
            bad(
                "storage.segment_size",
                format!("must be a power of two from 32 B to 1 KiB (is {})", s.segment_size),
            );
        }
        let block = s.block_size.0;
        if !block.is_power_of_two() || !(1024..=(16 << 20)).contains(&block) {
            bad(
                "storage.block_size",
                format!("must be a power of two from 1 KiB to 16 MiB (is {})", s.block_size),
            );
        } else if block < seg {
            bad("storage.block_size", "must be at least storage.segment_size".into());
        }
        if s.stripe_size.0 == 0 || s.stripe_size.0 > 256 << 20 {
            bad("storage.stripe_size", format!("must be from 1 B to 256 MiB (is {})", s.stripe_size));
        }
        if s.cache_size.0 < (1 << 20) {
            bad("storage.cache_size", "must be at least 1 MiB".into());
        }
        if s.scrub.enabled && s.scrub.rate.0 == 0 {
            bad("storage.scrub.rate", "must be greater than 0 when scrubbing is enabled".into());
        }
        if !self.api.listen.ip().is_loopback() {
            bad(
                "api.listen",
                format!("must be a loopback address such as 127.0.0.1 (is {})", self.api.listen.ip()),
            );
        }
        if self.node.shutdown_timeout_secs == 0 || self.node.shutdown_timeout_secs > 600 {
            bad("node.shutdown_timeout_secs", "must be from 1 to 600".into());
        }
        let n = &self.network;
        for (key, list) in [("network.listen", &n.listen), ("network.external", &n.external)] {
            for a in list.iter() {
                if let Err(e) = a.parse::<libp2p::Multiaddr>() {
                    bad(key, format!("`{a}` is not a multiaddr: {e}"));
                }
            }
        }
        for a in &n.bootstrap {
            match a.parse::<libp2p::Multiaddr>() {
                Err(e) => bad("network.bootstrap", format!("`{a}` is not a multiaddr: {e}")),
                Ok(m) if !matches!(m.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) => {
                    bad("network.bootstrap", format!("`{a}` must end in /p2p/PEERID"))
                }
                Ok(_) => {}
            }
        }
        if n.enabled && n.listen.is_empty() {
            bad("network.listen", "needs at least one address when the network is enabled".into());
        }
        if n.announce_interval_secs == 0 || n.announce_interval_secs > 3600 {
            bad("network.announce_interval_secs", "must be from 1 to 3600".into());
        }
        if n.announcement_max_age_secs < 2 * n.announce_interval_secs {
            bad(
                "network.announcement_max_age_secs",
                "must be at least twice network.announce_interval_secs, or providers flicker".into(),
            );
        }
        if n.max_providers == 0 || n.max_providers > 1_000_000 {
            bad("network.max_providers", "must be from 1 to 1000000".into());
        }
        if n.max_shard_size.0 < (64 << 10) || n.max_shard_size.0 > (1 << 30) {
            bad("network.max_shard_size", format!("must be from 64 KiB to 1 GiB (is {})", n.max_shard_size));
        }
        if n.request_timeout_secs == 0 || n.request_timeout_secs > 3600 {
            bad("network.request_timeout_secs", "must be from 1 to 3600".into());
        }
        if n.max_concurrent_per_peer == 0 || n.max_concurrent_per_peer > 256 {
            bad("network.max_concurrent_per_peer", "must be from 1 to 256".into());
        }
        if !matches!(n.bulk_listen.as_str(), "auto" | "off")
            && n.bulk_listen.parse::<std::net::SocketAddr>().is_err()
        {
            bad(
                "network.bulk_listen",
                format!("`{}` is not `auto`, `off` or HOST:PORT such as 0.0.0.0:7462", n.bulk_listen),
            );
        }
        let r = &n.repair;
        if r.interval_secs == 0 || r.interval_secs > 86_400 {
            bad("network.repair.interval_secs", "must be from 1 to 86400".into());
        }
        if r.grace_secs < r.interval_secs {
            bad("network.repair.grace_secs", "must be at least network.repair.interval_secs".into());
        }
        if r.lease_secs < 10 || r.lease_secs > 3600 {
            bad("network.repair.lease_secs", "must be from 10 to 3600".into());
        }
        self.chain.validate(&mut p);
        self.compute.validate(&mut p);
        let mut bad = |key: &str, message: String| p.push(Problem { key: key.into(), message });
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad("log.level", format!("`{}` is not a log filter (try `info` or `debug`)", self.log.level));
        }
        match writable_dir(&self.node.data_dir) {
            Ok(()) => {}
            Err(why) => bad("node.data_dir", why),
        }
        p
    }

    /// Reads, parses and validates `path`; relative paths become absolute.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates config text; `path` names it in errors and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| s.start);
            let key = at.and_then(|o| key_at_offset(text, o));
            ConfigError::Invalid(vec![format!(
                "{}:{} {}",
                locate(&name, text, at),
                key.map(|k| format!(" {k}:")).unwrap_or_default(),
                e.message().trim()
            )])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.resolve_paths(&base);
        let problems = cfg.validate();
        if problems.is_empty() {
            return Ok(cfg);
        }
        Err(ConfigError::Invalid(
            problems
                .into_iter()
                .map(|p| {
                    format!("{}: {}: {}", locate(&name, text, key_offset(text, &p.key)), p.key, p.message)
                })
                .collect(),
        ))
    }

    /// Makes `data_dir` absolute (against `base`) and the key paths absolute (against `data_dir`).
    pub fn resolve_paths(&mut self, base: &Path) {
        let n = &mut self.node;
        if n.data_dir.is_relative() {
            n.data_dir = absolute(&base.join(&n.data_dir));
        }
        n.identity = n.data_dir.join(&n.identity);
        n.keystore = n.data_dir.join(&n.keystore);
        if let Some(p) = &mut n.password_file
            && p.is_relative()
        {
            *p = n.data_dir.join(&*p);
        }
    }

    /// The sled database directory.
    pub fn store_dir(&self) -> PathBuf {
        self.node.data_dir.join("store")
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// Checks that `dir` exists (or can be created) and is writable.
fn writable_dir(dir: &Path) -> Result<(), String> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(format!("cannot create {}: {e}", dir.display()));
    }
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("{} is not writable: {e}", dir.display())),
    }
}

/// `file:line` for a byte offset, or just `file` without one.
fn locate(name: &str, text: &str, offset: Option<usize>) -> String {
    match offset {
        Some(o) => format!("{name}:{}", text[..o.min(text.len())].matches('\n').count() + 1),
        None => name.to_string(),
    }
}

/// Byte offset of a dotted key (or, if absent, of the nearest table that would hold it).
fn key_offset(text: &str, dotted: &str) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut best = None;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some((key, item)) = table.get_key_value(part) else { break };
        best = key.span().map(|s| s.start).or(best);
        if i + 1 == parts.len() {
            break;
        }
        match item.as_table_like() {
            Some(t) => table = t,
            None => break,
        }
    }
    best
}

/// Dotted path of the innermost key whose key or value spans `offset`.
fn key_at_offset(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::Document::parse(text).ok()?;
    fn walk(t: &dyn toml_edit::TableLike, offset: usize, path: &mut Vec<String>) -> bool {
        for (k, item) in t.iter() {
            let key = t.key(k);
            let in_key = key.and_then(|k| k.span()).is_some_and(|s| s.contains(&offset));
            let in_item = item.span().is_some_and(|s| s.contains(&offset));
            if let Some(sub) = item.as_table_like() {
                path.push(k.to_string());
                if walk(sub, offset, path) || in_key {
                    return true;
                }
                path.pop();
            } else if in_key || in_item {
                path.push(k.to_string());
                return true;
            }
        }
        false
    }
    let mut path = Vec::new();
    walk(doc.as_table(), offset, &mut path).then(|| path.join("."))
}

#[cfg(test)]
mod tests;
