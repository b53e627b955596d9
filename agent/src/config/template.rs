//! The commented default config that `bigfile-agent init` writes.

use std::net::SocketAddr;
use std::path::Path;

/// Renders the default config for a node whose state lives in `data_dir`.
///
/// Every value equals the built-in default except the ones given here (`listen` replaces the
/// default listen addresses when not empty); a test checks that the rendered file parses,
/// validates and means exactly that.
pub fn render_default(
    data_dir: &Path,
    api: SocketAddr,
    password_file: Option<&Path>,
    listen: &[String],
    bootstrap: &[String],
) -> String {
    let list =
        |v: &[String]| format!("[{}]", v.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", "));
    let listen = if listen.is_empty() { list(&super::NetworkConfig::default().listen) } else { list(listen) };
    let bootstrap = list(bootstrap);
    let password = match password_file {
        Some(p) => format!("password_file = {}", toml_string(&p.display().to_string())),
        None => "# password_file = \"/etc/bigfile-agent/keystore-password\"".to_string(),
    };
    format!(
        r#"# bigfile-agent configuration. Unknown keys are errors; `bigfile-agent config check` validates.
# Sizes take units: B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB).

[node]
# State directory: the shard store, keys and checkpoints. Relative paths below are inside it.
data_dir = {data_dir}
# libp2p identity (ed25519), written by `init`.
identity = "identity.key"
# Chain key, encrypted (Web3 Secret Storage), written by `init`.
keystore = "keystore.json"
# File holding the keystore password. Without it, the systemd credential `keystore-password`
# ($CREDENTIALS_DIRECTORY/keystore-password) is used.
{password}
# Seconds a shutdown may take before in-flight work is abandoned (it is checkpointed first).
shutdown_timeout_secs = 10

[api]
# Local HTTP endpoint: /status (JSON) and /metrics (Prometheus). Loopback addresses only.
enabled = true
listen = "{api}"

[storage]
# Most shard bytes this node will hold; puts beyond it are refused before anything is written.
capacity = "100 GiB"
# Default erasure coding: any `data` of the `data + parity` shards of a stripe rebuild it.
data = 4
parity = 2
# Object bytes per stripe (rounded up to a multiple of `data`).
stripe_size = "1 MiB"
# Proof segment: the unit a storage proof reveals. Power of two, 32 B to 1 KiB.
segment_size = "1 KiB"
# Size of the blocks kept in the database; a power-of-two multiple of segment_size.
# sled stores 16-100 KiB values with the least overhead.
block_size = "64 KiB"
# Database page cache.
cache_size = "256 MiB"
# Free space always left on the disk. A put is refused unless twice its shard bytes (database
# overhead included) plus this reserve are free: the database must never run into a full disk.
disk_reserve = "1 GiB"

[storage.scrub]
# Re-verify every stored block in the background and repair from parity what it can.
enabled = true
# Bytes verified per second at most.
rate = "32 MiB"
# Seconds to rest between complete passes.
pause_secs = 3600

[network]
# Join the BigFile network: announce capacity, serve and store shards for other agents.
enabled = true
# Multiaddrs to listen on, TCP and QUIC.
listen = {listen}
# Extra addresses to announce (a public address with a port forward, say).
external = []
# Peers to join through: "MULTIADDR/p2p/PEERID", re-dialled with back-off while unreachable.
bootstrap = {bootstrap}
# Seconds between signed availability announcements, and how old one may get before it is dropped.
announce_interval_secs = 30
announcement_max_age_secs = 300
# Announcements stamped further in the future than this are refused (keep the clock in sync).
max_clock_skew_secs = 120
# Most providers remembered.
max_providers = 4096
# Largest shard sent or accepted in one message; bounds memory per request. Objects up to
# `data` times this size can be stored over the network.
max_shard_size = "256 MiB"
# Seconds a request may take, and requests one peer may have in flight here.
request_timeout_secs = 120
max_concurrent_per_peer = 4
# Shard downloads carry their bytes on a plain TCP port beside libp2p (several times faster:
# no encryption of bytes every downloader checks against the shard's Merkle root anyway; the
# one-time token that opens it travels encrypted). "auto": the first listen address's IP and a
# free port; "HOST:PORT" to pin it (open it in the firewall); "off": every shard byte stays
# inside libp2p's encrypted connections, both serving and downloading.
bulk_listen = "auto"
# Seconds a peer that sent garbage, bad shards or bad signatures stays banned.
ban_secs = 600
# Asking price in BIG base units per GiB-month.
price_per_gib_month = 1000000000000000

[network.repair]
# Holders of an object challenge each other every interval; a holder unreachable or wrong for
# longer than the grace period has its shard rebuilt on another provider by one surviving holder
# (chosen deterministically, holding a lease granted by the others).
enabled = true
interval_secs = 60
grace_secs = 600
lease_secs = 600

[log]
# A tracing filter such as "info", "debug" or "bigfile_storage=debug,info".
level = "info"
"#,
        data_dir = toml_string(&data_dir.display().to_string()),
    )
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
