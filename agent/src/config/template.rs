//! The commented default config that `bigfile-agent init` writes.

use std::net::SocketAddr;
use std::path::Path;

/// What `init` puts into a new config; everything else is the built-in default.
#[derive(Debug, Clone)]
pub struct InitValues<'a> {
    /// State directory.
    pub data_dir: &'a Path,
    /// Local HTTP API address.
    pub api: SocketAddr,
    /// Keystore password file.
    pub password_file: Option<&'a Path>,
    /// Listen addresses (empty: the defaults).
    pub listen: &'a [String],
    /// Bootstrap peers.
    pub bootstrap: &'a [String],
    /// The chain to join (`init --devnet`); `None` leaves `[chain]` disabled.
    pub chain: Option<ChainInit>,
}

/// The chain a new node joins.
#[derive(Debug, Clone)]
pub struct ChainInit {
    /// HTTP JSON-RPC URL.
    pub rpc_url: String,
    /// Its chain id.
    pub chain_id: u64,
    /// The StorageMarket contract's address.
    pub storage_market: String,
    /// The ComputeMarket contract's address.
    pub compute_market: String,
    /// The contracts' deployment block.
    pub start_block: u64,
}

/// Renders the default config for a new node.
///
/// Every value equals the built-in default except the ones given here (`listen` replaces the
/// default listen addresses when not empty); a test checks that the rendered file parses,
/// validates and means exactly that.
pub fn render_default(v: &InitValues<'_>) -> String {
    let InitValues { data_dir, api, password_file, listen, bootstrap, .. } = *v;
    let list =
        |v: &[String]| format!("[{}]", v.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", "));
    let listen = if listen.is_empty() { list(&super::NetworkConfig::default().listen) } else { list(listen) };
    let bootstrap = list(bootstrap);
    let password = match password_file {
        Some(p) => format!("password_file = {}", toml_string(&p.display().to_string())),
        None => "# password_file = \"/etc/bigfile-agent/keystore-password\"".to_string(),
    };
    let d = super::ChainConfig::default();
    let c = super::ComputeConfig::default();
    let chain = match &v.chain {
        Some(c) => format!(
            "enabled = true\nrpc_url = {}\nchain_id = {}\nstorage_market = {}\ncompute_market = {}\nstart_block = {}",
            toml_string(&c.rpc_url),
            c.chain_id,
            toml_string(&c.storage_market),
            toml_string(&c.compute_market),
            c.start_block
        ),
        None => format!(
            "enabled = false\nrpc_url = {}\n# chain_id = 2442\n# storage_market = \"0x...\"\n# compute_market = \"0x...\"\nstart_block = 0",
            toml_string(&d.rpc_url)
        ),
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
# Proof segment: the unit a storage proof reveals. Power of two, 32 B to 1 KiB. Each period a
# holder sends one segment and its Merkle path on chain: 256 B keeps a proof transaction under
# 60k gas (about 57k at 16 MiB shards); 1 KiB costs about 85k (chain/contracts/GAS.md).
segment_size = "256 B"
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

[chain]
# The BigFile L2: storage deals, proofs each period, slashing and BIG rewards. Off: the node
# only serves the storage network. `rpc_url` must report `chain_id` (checked before anything is
# signed); the registry and the BIG token are read from the `storage_market` contract;
# `compute_market` (optional) is where render and inference jobs are posted; the event watcher
# starts at `start_block` (the contracts' deployment block).
{chain}
# Blocks a block must be buried under before its events are acted on (reorg safety).
confirmations = {confirmations}
# Milliseconds between polls for new blocks.
poll_interval_ms = {poll}
# Gas budget: the highest fee per gas ever paid (gwei) and the most gas one transaction may use.
max_fee_gwei = {max_fee}
max_gas_per_tx = {max_gas}
# Seconds without a receipt before a transaction is re-sent with higher fees (same nonce).
replace_after_secs = {replace}
# Proofs go out at least this many blocks before their period ends, at most proof_batch a transaction.
proof_margin_blocks = {margin}
proof_batch = {batch}
# Take free slots of deals whose shards this node holds and has verified.
take_slots = true

[chain.deal]
# What `client put` offers: proving periods, and BIG base units per shard slot per proven period.
periods = {periods}
price_per_slot_period = {price}

[compute]
# Render and inference jobs from chain.compute_market. A job is taken only when its limits fit
# these and it pays at least the prices below; storage proofs always go first.
take_jobs = true
# Enroll as a verifier: re-run the tiles the market draws for this node and vote.
verify = true
# wgpu adapter for renders (see `bigfile-agent devices`): part of "backend:name", "gpu", "cpu",
# or empty for the best. Inference: "cpu", or "cuda:0" in a build with the cuda feature.
render_device = ""
infer_device = "cpu"
# The most a job may ask for: wall time (seconds), device memory, output size.
max_wall_secs = {c_wall}
max_device_memory = "{c_mem}"
max_output_bytes = "{c_out}"
# Least payment, BIG base units: per million primary samples (render), per output megapixel (infer).
render_price_per_msample = {c_rprice}
infer_price_per_mpixel = {c_iprice}

[log]
# A tracing filter such as "info", "debug" or "bigfile_storage=debug,info".
level = "info"
"#,
        data_dir = toml_string(&data_dir.display().to_string()),
        confirmations = d.confirmations,
        poll = d.poll_interval_ms,
        max_fee = d.max_fee_gwei,
        max_gas = d.max_gas_per_tx,
        replace = d.replace_after_secs,
        margin = d.proof_margin_blocks,
        batch = d.proof_batch,
        periods = d.deal.periods,
        price = d.deal.price_per_slot_period,
        c_wall = c.max_wall_secs,
        c_mem = c.max_device_memory,
        c_out = c.max_output_bytes,
        c_rprice = c.render_price_per_msample,
        c_iprice = c.infer_price_per_mpixel,
    )
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
