//! Single shards held without the rest of their object: looking them up, serving, listing and
//! dropping them (storing one is in `held_put`).
//!
//! A held shard has a local handle of its own, exactly like a whole object: its blocks and its
//! shard metadata live under (handle, shard index), and the `held` tree maps
//! `object id || shard index` to a [`HeldRecord`]. The object's manifest sits in `manifests`
//! for as long as a held shard or the whole object refers to it.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::read::{BlockCache, Loaded, ObjectCtx, meta_matches};
use super::{SHARDS, Store, USED, add_counter};
use crate::error::{DecodeError, Result, StoreError};
use crate::manifest::ObjectId;
use crate::records::{HeldRecord, held_key, parse_held_key};

/// Blocks loaded and verified per slice of a ranged read, to bound memory.
const READ_SLICE_BLOCKS: u32 = 64;
/// Most shards an object can have (k + m <= 256).
const MAX_SHARDS: usize = 256;

/// One shard held by this store (for `list_shards`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShardInfo {
    /// Object id (hex).
    pub object: String,
    /// Shard index (data shards first, then parity).
    pub index: u16,
    /// Shard length in bytes (also the bytes it occupies in the store).
    pub len: u64,
    /// When it was stored (Unix seconds).
    pub created_unix: u64,
}

/// True if any shard `0..shards` of `id` is held, read inside a transaction.
pub(super) fn any_held(
    held: &TransactionalTree,
    id: &ObjectId,
    shards: usize,
) -> Result<bool, ConflictableTransactionError<StoreError>> {
    for i in 0..shards.min(MAX_SHARDS) {
        if held.get(held_key(id, i as u16))?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Store {
    /// The held-shard record of shard `index` of `id`, if held.
    pub(crate) fn held_record(&self, id: &ObjectId, index: u16) -> Result<Option<HeldRecord>> {
        match self.held.get(held_key(id, index)).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => HeldRecord::decode(&v).map(Some).map_err(StoreError::Corrupt),
        }
    }

    /// Shards the object `id` has according to its manifest, or the most any object can have
    /// when the manifest is missing or unreadable (used to bound reference checks).
    pub(super) fn shard_count_hint(&self, id: &ObjectId) -> Result<usize> {
        match self.manifest(id) {
            Ok(m) => Ok(m.geometry.total_shards()),
            Err(StoreError::NotFound(_) | StoreError::Corrupt(_)) => Ok(MAX_SHARDS),
            Err(e) => Err(e),
        }
    }

    /// The read context of one held shard: only its metadata is present.
    pub(crate) fn held_ctx(&self, id: &ObjectId, index: u16, rec: &HeldRecord) -> Result<ObjectCtx> {
        let manifest = self.manifest(id).map_err(|e| match e {
            StoreError::NotFound(_) => StoreError::Corrupt(DecodeError::new(
                "held shard",
                format!("shard {index} of object {id} is held but its manifest is missing"),
            )),
            e => e,
        })?;
        let g = manifest.geometry;
        let i = usize::from(index);
        if i >= g.total_shards() {
            return Err(StoreError::Corrupt(DecodeError::new(
                "held shard",
                format!("shard {index} of object {id} is past the manifest's {} shards", g.total_shards()),
            )));
        }
        let mut metas = vec![None; g.total_shards()];
        metas[i] = self.shard_meta(rec.handle, index)?.filter(|m| meta_matches(m, &manifest, i));
        Ok(ObjectCtx { id: *id, handle: rec.handle, geometry: g, metas, held: true })
    }

    /// The read context that serves shard `index` of `id`: the held shard if there is one,
    /// otherwise the locally stored whole object.
    pub(crate) fn shard_ctx(&self, id: &ObjectId, index: u16) -> Result<ObjectCtx> {
        if let Some(rec) = self.held_record(id, index)? {
            return self.held_ctx(id, index, &rec);
        }
        let ctx = match self.object_ctx(id) {
            Ok(ctx) => Some(ctx),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        // The manifest is known through the whole object or other held shards, or not at all.
        let total = match &ctx {
            Some(ctx) => ctx.geometry.total_shards(),
            None => self.manifest(id)?.geometry.total_shards(),
        };
        if usize::from(index) >= total {
            return Err(StoreError::Params(DecodeError::new(
                "shard index",
                format!("no such shard: {index} is not below the object's {total} shards"),
            )));
        }
        ctx.ok_or_else(|| StoreError::ShardNotHeld { object: id.to_hex(), index })
    }

    /// True if this store can serve shard `index` of `id` (held shard, or a locally stored whole
    /// object).
    pub fn has_shard(&self, id: &ObjectId, index: u16) -> Result<bool> {
        if self.held.contains_key(held_key(id, index)).map_err(|e| self.db_err(e))? {
            return Ok(true);
        }
        if !self.contains(id)? {
            return Ok(false);
        }
        Ok(usize::from(index) < self.manifest(id)?.geometry.total_shards())
    }

    /// Shard indices of `id` this store holds (sorted), empty if none: the held shards, and
    /// every shard when the whole object is stored locally (so exactly those for which
    /// [`Store::has_shard`] is true).
    pub fn held_shards(&self, id: &ObjectId) -> Result<Vec<u16>> {
        let mut out = std::collections::BTreeSet::new();
        for item in self.held.scan_prefix(id.0).keys() {
            let k = item.map_err(|e| self.db_err(e))?;
            let (_, index) = parse_held_key(&k).map_err(StoreError::Corrupt)?;
            out.insert(index);
        }
        if self.contains(id)? {
            let n = self.manifest(id)?.geometry.total_shards().min(MAX_SHARDS);
            out.extend((0..n).map(|i| i as u16));
        }
        Ok(out.into_iter().collect())
    }

    /// Bytes `[offset, offset + len)` of shard `index` of `id`, every block read verified against
    /// its root. A corrupt or missing block is an error naming object, shard and block
    /// ([`StoreError::DamagedBlock`]); nothing is repaired here. A range past the end of the
    /// shard is refused. Serves a held shard, or else a shard of a locally stored whole object.
    pub fn read_shard(&self, id: &ObjectId, index: u16, offset: u64, len: u64) -> Result<Vec<u8>> {
        let ctx = self.shard_ctx(id, index)?;
        let meta = ctx.metas[usize::from(index)].as_ref().ok_or_else(|| {
            StoreError::Corrupt(DecodeError::new(
                "shard metadata",
                format!("shard {index} of object {id}: missing or inconsistent with the manifest"),
            ))
        })?;
        let end = offset.checked_add(len).filter(|end| *end <= meta.len).ok_or_else(|| {
            StoreError::Params(DecodeError::new(
                "shard range",
                format!(
                    "{len} bytes at offset {offset} run past the end of shard {index} ({} bytes)",
                    meta.len
                ),
            ))
        })?;
        let mut out = Vec::with_capacity(len as usize);
        if len == 0 {
            return Ok(out);
        }
        let bs = u64::from(meta.block_size);
        let (first, stop) = ((offset / bs) as u32, end.div_ceil(bs) as u32);
        let mut b = first;
        while b < stop {
            let slice_end = b.saturating_add(READ_SLICE_BLOCKS).min(stop);
            let mut cache = BlockCache::new();
            self.load_blocks(&ctx, index, b..slice_end, &mut cache)?;
            // The cache is ordered by block, so bytes come out in order.
            for ((_, block), loaded) in cache {
                let data = match loaded {
                    Loaded::Good(data) => data,
                    Loaded::Bad(problem) => {
                        return Err(StoreError::DamagedBlock {
                            object: id.to_hex(),
                            shard: index,
                            block,
                            problem,
                        });
                    }
                };
                let start = u64::from(block) * bs;
                let from = (offset.max(start) - start) as usize;
                let to = (end.min(start + data.len() as u64) - start) as usize;
                let bytes = data.get(from..to).ok_or_else(|| {
                    StoreError::Corrupt(DecodeError::new("block", "shorter than its shard metadata says"))
                })?;
                out.extend_from_slice(bytes);
            }
            b = slice_end;
        }
        Ok(out)
    }

    /// Drops a held shard: invisible and its bytes freed atomically (counters exact), data
    /// deleted after, crash-safe like [`Store::remove`]. The manifest goes when neither another
    /// held shard nor the whole object refers to it. Returns the bytes freed; a shard that is not
    /// held is [`StoreError::ShardNotHeld`] (a shard of a whole object is not removed this way).
    pub fn remove_shard(&self, id: &ObjectId, index: u16) -> Result<u64> {
        let rec = self.unlink_shard(id, index)?;
        self.finish_removal(rec.handle)?;
        tracing::debug!(object = %id, shard = index, bytes = rec.len, "held shard removed");
        Ok(rec.len)
    }

    /// First half of `remove_shard`: one transaction makes the shard invisible, frees its bytes,
    /// drops the manifest if nothing else refers to it and marks the handle pending removal.
    pub(super) fn unlink_shard(&self, id: &ObjectId, index: u16) -> Result<HeldRecord> {
        let not_held = || StoreError::ShardNotHeld { object: id.to_hex(), index };
        let rec = self.held_record(id, index)?.ok_or_else(not_held)?;
        let key = held_key(id, index);
        let shards = self.shard_count_hint(id)?;
        (&self.held, &self.objects, &self.manifests, &self.counters, &self.pending)
            .transaction(|(held, objects, manifests, counters, pending)| {
                // A concurrent removal may have won; then this one must change nothing.
                if held.get(key)?.as_deref() != Some(&rec.encode()[..]) {
                    return Err(ConflictableTransactionError::Abort(not_held()));
                }
                held.remove(&key[..])?;
                if objects.get(id.0)?.is_none() && !any_held(held, id, shards)? {
                    manifests.remove(&id.0)?;
                }
                add_counter(counters, USED, -i128::from(rec.len))?;
                add_counter(counters, SHARDS, -1)?;
                pending.insert(&rec.handle.to_be_bytes(), &[2u8][..])?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<StoreError>| StoreError::from(e))?;
        Ok(rec)
    }

    /// Every held shard (not whole objects), sorted by object then index.
    pub fn list_shards(&self) -> Result<Vec<ShardInfo>> {
        Ok(self
            .held_entries(None)?
            .into_iter()
            .map(|(id, index, rec)| ShardInfo {
                object: id.to_hex(),
                index,
                len: rec.len,
                created_unix: rec.created_unix,
            })
            .collect())
    }

    /// Every held shard as (object, index, record), in key order.
    pub(crate) fn held_entries(&self, only: Option<&ObjectId>) -> Result<Vec<(ObjectId, u16, HeldRecord)>> {
        let iter = match only {
            Some(id) => self.held.scan_prefix(id.0),
            None => self.held.iter(),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let (id, index) = parse_held_key(&k).map_err(StoreError::Corrupt)?;
            out.push((id, index, HeldRecord::decode(&v).map_err(StoreError::Corrupt)?));
        }
        Ok(out)
    }

    /// A sled tree for the agent's own durable records (holder lists, repair leases), in the
    /// same database so one [`Store::flush`] covers it. Its sled name is `agent/{name}`, which no
    /// store tree uses.
    pub fn agent_tree(&self, name: &str) -> Result<sled::Tree> {
        if name.is_empty() {
            return Err(StoreError::Params(DecodeError::new("agent tree name", "must not be empty")));
        }
        self.db.open_tree(format!("agent/{name}")).map_err(|e| self.db_err(e))
    }
}
