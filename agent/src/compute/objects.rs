//! Job objects on the network: a job's inputs and its provider's output are BigFile objects. A
//! provider stores its output as an object replicated on two other providers (one copy where the
//! network has only one other), and anyone reads inputs and outputs back by id.

use std::sync::Arc;

use anyhow::{Result, bail};
use bigfile_storage::coding::{decode_object, encode_object};
use bigfile_storage::{Geometry, ObjectId, Store};
use indicatif::ProgressBar;
use libp2p::PeerId;

use crate::net::node::NodeHandle;
use crate::net::transfer::{fetch_shards, find_record_with, place};

/// Stripe size outputs are coded with (one data shard: the stripe is the whole shard row).
const OUTPUT_STRIPE: u32 = 1 << 20;

/// Stores `bytes` as an object on other providers: one data shard and, when two or more other
/// providers are known, one parity copy. Returns the object id.
pub async fn store(node: &NodeHandle, bytes: Vec<u8>, segment_size: u32) -> Result<ObjectId> {
    let me = node.peer_id();
    let mut others: Vec<PeerId> =
        node.providers().await?.iter().map(|a| a.body.peer_id).filter(|p| *p != me).collect();
    others.sort();
    others.dedup();
    if others.is_empty() {
        bail!("no other provider is known to store the job's output on");
    }
    let geometry = Geometry {
        size: bytes.len() as u64,
        data: 1,
        parity: u16::from(others.len() >= 2),
        stripe_size: Geometry::round_stripe(OUTPUT_STRIPE, 1),
        segment_size,
    };
    let (manifest, shards) = tokio::task::spawn_blocking(move || encode_object(&bytes, geometry)).await??;
    let manifest = Arc::new(manifest);
    let (holders, failed) = place(node, &manifest, shards, &ProgressBar::hidden()).await?;
    if !failed.is_empty() {
        tracing::debug!(failed = ?failed, "some providers refused a shard of the output; replaced");
    }
    tracing::debug!(object = %manifest.object_id().to_hex(), holders = holders.len(), "job output stored");
    Ok(manifest.object_id())
}

/// Fetches object `id` (asking `also` beside the DHT; shards held here are read from `local`),
/// refusing one larger than `max_bytes` before fetching any shard.
pub async fn fetch(
    node: &NodeHandle,
    local: Option<Arc<Store>>,
    id: &ObjectId,
    also: &[PeerId],
    max_bytes: u64,
) -> Result<Vec<u8>> {
    let mut failed = Vec::new();
    let (manifest, holders, _) = find_record_with(node, id, also, &mut failed).await?;
    if manifest.geometry.size > max_bytes {
        bail!(
            "object {} is {} bytes, more than the {max_bytes} allowed here",
            id.to_hex(),
            manifest.geometry.size
        );
    }
    let (shards, _, _) = fetch_shards(node, &manifest, &holders, local, &ProgressBar::hidden()).await?;
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(manifest.geometry.size as usize);
        decode_object(&manifest, &shards, &mut out)?;
        Ok(out)
    })
    .await?
}
