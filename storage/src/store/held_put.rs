//! Storing one shard of an object that a client or repairer sends: check, write, verify, commit.
//!
//! The shard gets a fresh handle recorded in `pending` (flushed) before any block is written; its
//! blocks are hashed and written on every core, the block roots folded into the shard root, and
//! only if that equals the manifest's root is the shard committed, in one transaction with its
//! `held` record, the manifest, the counters and the removal from `pending`. Anything else rolls
//! the handle back, now or at the next open.

use rayon::prelude::*;
use sled::Transactional;

use super::{SHARDS, Store, USED, add_counter, now_unix};
use crate::error::{DecodeError, Result, StoreError};
use crate::manifest::{Geometry, Manifest, ObjectId};
use crate::merkle::{self, Hash};
use crate::records::{BlockRecord, HeldRecord, ShardMeta, block_key, held_key, shard_key};

/// Outcome of put_shard.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShardPutReport {
    /// Object id (hex).
    pub object: String,
    /// Shard index.
    pub index: u16,
    /// Shard length in bytes.
    pub len: u64,
    /// True if the shard was already held (as a held shard or in the whole object) and nothing
    /// new was written.
    pub deduplicated: bool,
}

impl Store {
    /// Stores shard `index` of the object `manifest` describes, durably.
    ///
    /// `data` must be exactly `manifest.geometry.shard_len()` bytes, and its Merkle root must
    /// equal `manifest.shard_roots[index]`; otherwise nothing is stored
    /// ([`StoreError::ShardRootMismatch`], or [`StoreError::Params`] for a wrong length or index).
    /// Capacity and disk space are checked as for [`Store::put`]. A shard already held, as a held
    /// shard or because the whole object is stored here, is checked against the root too and then
    /// reported as `deduplicated`. The manifest is validated and stored if new. A crash at any
    /// point leaves the shard either fully stored or absent.
    pub fn put_shard(&self, manifest: &Manifest, index: u16, data: &[u8]) -> Result<ShardPutReport> {
        let g = manifest.geometry;
        self.check_shard_params(manifest, index, data)?;
        let id = manifest.object_id();
        let len = g.shard_len();
        let expected = manifest.shard_roots[usize::from(index)];
        let height = self.block_height(&g);
        let report = |deduplicated| ShardPutReport { object: id.to_hex(), index, len, deduplicated };
        let mismatch = || StoreError::ShardRootMismatch { object: id.to_hex(), index };

        if self.has_shard(&id, index)? {
            // Already here: still refuse data that is not the shard.
            let roots: Vec<Hash> = data
                .par_chunks(self.block_size as usize)
                .map(|b| merkle::subtree_root(b, g.segment_size, height))
                .collect();
            if merkle::fold_to_root(roots, height, merkle::tree_depth(len, g.segment_size)) != expected {
                return Err(mismatch());
            }
            return Ok(report(true));
        }

        let _reservation = self.reserve(len)?;
        let handle = self.begin()?;
        let written = self.write_shard(handle, &id, index, data, &g, height).and_then(|root| {
            if root != expected {
                return Err(mismatch());
            }
            let rec = HeldRecord { handle, len, created_unix: now_unix() };
            self.commit_shard(&id, index, &manifest.encode(), &rec)
        });
        match written {
            Ok(true) => {
                // Committed: a failed flush must not roll the shard back.
                self.flush()?;
                tracing::debug!(object = %id, shard = index, len, "shard stored");
                Ok(report(false))
            }
            Ok(false) => {
                // Another put of the same shard (or of the whole object) committed first.
                self.abort(handle);
                self.flush()?;
                Ok(report(true))
            }
            Err(e) => {
                self.abort(handle);
                Err(e)
            }
        }
    }

    /// Rejects a bad manifest, shard index or data length before anything is written.
    fn check_shard_params(&self, manifest: &Manifest, index: u16, data: &[u8]) -> Result<()> {
        let g = &manifest.geometry;
        g.validate().map_err(StoreError::Params)?;
        let total = g.total_shards();
        if manifest.shard_roots.len() != total {
            return Err(StoreError::Params(DecodeError::new(
                "manifest",
                format!("{} shard roots for {total} shards", manifest.shard_roots.len()),
            )));
        }
        if usize::from(index) >= total {
            return Err(StoreError::Params(DecodeError::new(
                "shard index",
                format!("{index} is out of range: the object has {total} shards (0..{total})"),
            )));
        }
        if data.len() as u64 != g.shard_len() {
            return Err(StoreError::Params(DecodeError::new(
                "shard data",
                format!("shard {index} must be exactly {} bytes, got {}", g.shard_len(), data.len()),
            )));
        }
        if self.block_size < g.segment_size {
            return Err(StoreError::Params(DecodeError::new(
                "block size",
                "must be at least the segment size",
            )));
        }
        Ok(())
    }

    /// Height of a stored block's subtree for objects of geometry `g` (as `put` lays them out).
    pub(super) fn block_height(&self, g: &Geometry) -> u32 {
        let depth = merkle::tree_depth(g.shard_len(), g.segment_size);
        (self.block_size / g.segment_size).trailing_zeros().min(depth)
    }

    /// Writes the shard's blocks and metadata under `handle`, hashing and writing on every core;
    /// returns the shard root they fold into.
    pub(super) fn write_shard(
        &self,
        handle: u64,
        id: &ObjectId,
        index: u16,
        data: &[u8],
        g: &Geometry,
        height: u32,
    ) -> Result<Hash> {
        let block_roots: Vec<Hash> = data
            .par_chunks(self.block_size as usize)
            .enumerate()
            .map(|(b, bytes)| {
                let root = merkle::subtree_root(bytes, g.segment_size, height);
                let key = block_key(handle, index, b as u32);
                self.blocks
                    .insert(key, BlockRecord::encode(height as u8, &root, bytes))
                    .map_err(|e| self.db_err(e))?;
                Ok(root)
            })
            .collect::<Result<_>>()?;
        let depth = merkle::tree_depth(g.shard_len(), g.segment_size);
        let root = merkle::fold_to_root(block_roots.clone(), height, depth);
        let meta = ShardMeta {
            object: *id,
            len: g.shard_len(),
            block_size: self.block_size,
            block_height: height as u8,
            block_roots,
        };
        self.shards.insert(shard_key(handle, index), meta.encode()).map_err(|e| self.db_err(e))?;
        Ok(root)
    }

    /// Makes a fully written, verified shard visible, in one transaction with its manifest and
    /// accounting (not yet flushed). Returns false (and changes nothing) if the shard is already
    /// held by then.
    fn commit_shard(&self, id: &ObjectId, index: u16, manifest: &[u8], rec: &HeldRecord) -> Result<bool> {
        let key = held_key(id, index);
        (&self.held, &self.objects, &self.manifests, &self.counters, &self.pending)
            .transaction(|(held, objects, manifests, counters, pending)| {
                if held.get(key)?.is_some() || objects.get(id.0)?.is_some() {
                    return Ok(false);
                }
                held.insert(&key[..], rec.encode())?;
                if manifests.get(id.0)?.is_none() {
                    manifests.insert(&id.0[..], manifest)?;
                }
                add_counter(counters, USED, i128::from(rec.len))?;
                add_counter(counters, SHARDS, 1)?;
                pending.remove(&rec.handle.to_be_bytes())?;
                Ok(true)
            })
            .map_err(|e: sled::transaction::TransactionError<StoreError>| StoreError::from(e))
    }
}
