//! Networking: the libp2p node (a handle plus an event loop that owns the Swarm), signed
//! availability announcements, the table of known providers, provider selection, the shard
//! request-response protocol, and the provider's shard service.

pub mod announce;
pub mod bench;
pub mod bulk;
pub mod node;
pub mod protocol;
pub mod providers;
pub mod repair;
pub mod select;
pub mod service;
pub mod stream;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use bigfile_chain::ChainKey;
use bigfile_storage::Store;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use announce::{Availability, SignedAvailability};
use node::{NodeHandle, NodeOptions};

/// The agent's version string, as identify and announcements carry it.
pub const AGENT_VERSION: &str = concat!("bigfile-agent/", env!("CARGO_PKG_VERSION"));

/// Node options from the config; `provider` selects a serving node over a dial-only client.
pub fn node_options(cfg: &Config, identity: Keypair, provider: bool) -> NodeOptions {
    let n = &cfg.network;
    NodeOptions {
        identity,
        listen: if provider { n.listen_addrs() } else { vec![] },
        external: n.external_addrs(),
        bootstrap: n.bootstrap_addrs(),
        provider,
        max_shard: n.max_shard_size.0,
        request_timeout: Duration::from_secs(n.request_timeout_secs),
        max_concurrent_per_peer: n.max_concurrent_per_peer,
        bulk_listen: if provider { n.bulk().0 } else { None },
        bulk_downloads: n.bulk().1,
        announcement_max_age: Duration::from_secs(n.announcement_max_age_secs),
        max_clock_skew: Duration::from_secs(n.max_clock_skew_secs),
        max_providers: n.max_providers,
        ban: Duration::from_secs(n.ban_secs),
        agent_version: AGENT_VERSION.into(),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// This provider's availability (space from `usage`, price from `cfg`) at `timestamp`, signed by
/// both of its keys.
pub fn sign_availability(
    chain_key: &ChainKey,
    identity: &Keypair,
    listen_addrs: Vec<Multiaddr>,
    usage: &bigfile_storage::Usage,
    cfg: &Config,
    devices: &[String],
    timestamp: u64,
) -> Result<SignedAvailability, announce::AnnounceError> {
    let body = Availability {
        peer_id: identity.public().to_peer_id(),
        address: chain_key.address(),
        listen_addrs,
        free_bytes: usage.free_bytes,
        stored_bytes: usage.used_bytes,
        gpus: devices.to_vec(),
        price_per_gib_month: u128::from(cfg.network.price_per_gib_month),
        version: AGENT_VERSION.into(),
        timestamp,
    };
    SignedAvailability::sign(body, chain_key, identity)
}

/// The devices compute jobs can run on, as announced: `gpu vulkan:NAME` or `cpu vulkan:llvmpipe
/// ...` for each wgpu adapter (GPUs first), then `cuda:N` for each CUDA device of a `cuda` build;
/// at most [`announce::MAX_GPUS`], each cut to [`announce::MAX_GPU_NAME_BYTES`].
pub fn compute_devices() -> Vec<String> {
    let mut out: Vec<String> = bigfile_compute::gpu::list()
        .iter()
        .map(|d| format!("{} {}", if d.is_gpu() { "gpu" } else { "cpu" }, d.id()))
        .collect();
    out.sort_by_key(|d| !d.starts_with("gpu"));
    out.extend(
        bigfile_compute::infer::devices()
            .into_iter()
            .filter(|d| *d != bigfile_compute::infer::InferDevice::Cpu)
            .map(|d| d.name()),
    );
    out.truncate(announce::MAX_GPUS);
    for d in &mut out {
        let mut end = d.len().min(announce::MAX_GPU_NAME_BYTES);
        while !d.is_char_boundary(end) {
            end -= 1;
        }
        d.truncate(end);
    }
    out
}

/// Signs and publishes this provider's availability every `interval` until cancelled.
pub async fn announce_task(
    node: NodeHandle,
    store: Arc<Store>,
    chain_key: Arc<ChainKey>,
    identity: Keypair,
    cfg: Config,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let external = cfg.network.external_addrs();
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.network.announce_interval_secs));
    // The first announcement goes out once listeners are up and bootstrap peers had a moment.
    tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    // Kademlia keeps provider records in memory: after a restart, publish them again for every
    // object this node holds a shard of.
    let s = store.clone();
    let held = tokio::task::spawn_blocking(move || s.list_shards()).await??;
    let mut objects: Vec<String> = held.into_iter().map(|h| h.object).collect();
    objects.dedup();
    for id in objects {
        if let Ok(id) = bigfile_storage::ObjectId::from_hex(&id) {
            node.start_providing(id.0.to_vec()).await?;
        }
    }
    // The compute devices, probed once (adapters do not come and go while the agent runs).
    let devices = if cfg.compute.take_jobs || cfg.compute.verify {
        tokio::task::spawn_blocking(compute_devices).await?
    } else {
        Vec::new()
    };
    let mut last = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        // Gossipsub refuses to publish the same bytes twice; one announcement per second at most.
        if now_unix() == last {
            continue;
        }
        last = now_unix();
        let s = store.clone();
        let usage = tokio::task::spawn_blocking(move || s.usage()).await??;
        let info = node.info().await?;
        let mut addrs: Vec<Multiaddr> = info.listen_addrs.iter().filter_map(|a| a.parse().ok()).collect();
        addrs.extend(external.iter().cloned());
        addrs.dedup();
        addrs.truncate(16);
        node.publish(sign_availability(&chain_key, &identity, addrs, &usage, &cfg, &devices, last)?).await?;
    }
}
