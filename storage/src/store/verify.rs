//! Full verification: every block against its shard's commitment, and the accounting recounted.

use std::collections::BTreeMap;

use super::read::{BlockCache, Loaded, ObjectCtx};
use super::{OBJECTS, SHARDS, Store, USED};
use crate::error::{Result, StoreError};
use crate::manifest::ObjectId;
use crate::records::{ObjectRecord, parse_block_key};

/// A block that failed verification.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BadBlock {
    /// Object id (hex).
    pub object: String,
    /// Shard index.
    pub shard: u16,
    /// Block number.
    pub block: u32,
    /// What is wrong.
    pub problem: String,
}

/// Result of `verify`: integrity and exact accounting.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifyReport {
    /// Objects checked.
    pub objects: u64,
    /// Held shards checked.
    pub shards: u64,
    /// Blocks checked.
    pub blocks: u64,
    /// Shard bytes checked.
    pub bytes: u64,
    /// Blocks that failed.
    pub bad_blocks: Vec<BadBlock>,
    /// Used bytes according to the counters.
    pub recorded_used_bytes: u64,
    /// Used bytes recounted from the blocks themselves.
    pub counted_used_bytes: u64,
    /// Object count according to the counters.
    pub recorded_objects: u64,
    /// Objects counted.
    pub counted_objects: u64,
    /// Held-shard count according to the counters.
    pub recorded_shards: u64,
    /// Held shards counted.
    pub counted_shards: u64,
    /// Blocks that belong to no committed object, held shard or operation in flight.
    pub orphan_blocks: u64,
    /// Objects (`id`) and held shards (`id:index`) whose recorded size differs from the recount.
    pub mismatched_objects: Vec<String>,
    /// True if nothing above is wrong.
    pub ok: bool,
}

impl Store {
    /// Verifies one object (the whole object and any held shards of it), or everything and the
    /// store-wide accounting when `only` is `None`.
    pub fn verify(&self, only: Option<&ObjectId>) -> Result<VerifyReport> {
        let ids: Vec<ObjectId> = match only {
            Some(id) if self.contains(id)? => vec![*id],
            Some(_) => Vec::new(),
            None => self.object_ids()?,
        };
        let held = self.held_entries(only)?;
        if let Some(id) = only
            && ids.is_empty()
            && held.is_empty()
        {
            return Err(StoreError::NotFound(*id));
        }
        let mut r = VerifyReport {
            objects: 0,
            shards: 0,
            blocks: 0,
            bytes: 0,
            bad_blocks: Vec::new(),
            recorded_used_bytes: self.counter(USED)?,
            counted_used_bytes: 0,
            recorded_objects: self.counter(OBJECTS)?,
            counted_objects: 0,
            recorded_shards: self.counter(SHARDS)?,
            counted_shards: 0,
            orphan_blocks: 0,
            mismatched_objects: Vec::new(),
            ok: true,
        };
        for id in &ids {
            let ctx = self.object_ctx(id)?;
            let rec = self.object_record(id)?;
            for shard in 0..ctx.geometry.total_shards() as u16 {
                self.verify_shard(&ctx, shard, &mut r)?;
            }
            r.objects += 1;
            // Accounting counts what the store holds, so recount raw block sizes too.
            let raw = self.raw_bytes_of(rec.handle)?;
            if raw != rec.stored_bytes {
                r.mismatched_objects.push(id.to_hex());
            }
            r.counted_used_bytes += raw;
        }
        for (id, index, rec) in &held {
            let ctx = self.held_ctx(id, *index, rec)?;
            self.verify_shard(&ctx, *index, &mut r)?;
            r.shards += 1;
            let raw = self.raw_bytes_of(rec.handle)?;
            if raw != rec.len {
                r.mismatched_objects.push(format!("{}:{index}", id.to_hex()));
            }
            r.counted_used_bytes += raw;
        }
        if only.is_none() {
            r.counted_objects = ids.len() as u64;
            r.counted_shards = held.len() as u64;
            r.orphan_blocks = self.count_orphans()?;
        } else {
            // A single-object check does not recount the store.
            r.counted_objects = r.recorded_objects;
            r.counted_shards = r.recorded_shards;
            r.counted_used_bytes = r.recorded_used_bytes;
        }
        r.ok = r.bad_blocks.is_empty()
            && r.mismatched_objects.is_empty()
            && r.orphan_blocks == 0
            && r.counted_objects == r.recorded_objects
            && r.counted_shards == r.recorded_shards
            && r.counted_used_bytes == r.recorded_used_bytes;
        Ok(r)
    }

    /// Checks every block of one shard of `ctx`, adding to the report's block and byte counts and
    /// bad blocks.
    fn verify_shard(&self, ctx: &ObjectCtx, shard: u16, r: &mut VerifyReport) -> Result<()> {
        let meta = ctx.metas[usize::from(shard)].as_ref();
        if meta.is_none() {
            r.bad_blocks.push(BadBlock {
                object: ctx.id.to_hex(),
                shard,
                block: 0,
                problem: "shard metadata missing or inconsistent with the manifest".into(),
            });
        }
        let nblocks = meta.map_or(0, |m| m.block_roots.len() as u32);
        // Walk the shard in slices to bound memory.
        let mut b = 0;
        while b < nblocks {
            let end = (b + 256).min(nblocks);
            let mut cache = BlockCache::new();
            self.load_blocks(ctx, shard, b..end, &mut cache)?;
            for ((_, blk), l) in cache {
                r.blocks += 1;
                match l {
                    Loaded::Good(d) => r.bytes += d.len() as u64,
                    Loaded::Bad(problem) => {
                        r.bad_blocks.push(BadBlock { object: ctx.id.to_hex(), shard, block: blk, problem })
                    }
                }
            }
            b = end;
        }
        Ok(())
    }

    pub(crate) fn object_ids(&self) -> Result<Vec<ObjectId>> {
        let mut ids = Vec::new();
        for item in self.objects.iter().keys() {
            let k = item.map_err(|e| self.db_err(e))?;
            if let Ok(a) = <[u8; 32]>::try_from(k.as_ref()) {
                ids.push(ObjectId(a));
            }
        }
        Ok(ids)
    }

    /// Bytes of block data stored under a handle, recounted from the records.
    fn raw_bytes_of(&self, handle: u64) -> Result<u64> {
        let mut total = 0u64;
        for item in self.blocks.scan_prefix(handle.to_be_bytes()) {
            let (_, v) = item.map_err(|e| self.db_err(e))?;
            total += crate::records::BlockRecord::decode(&v).map_or(0, |b| b.data.len() as u64);
        }
        Ok(total)
    }

    /// Blocks whose handle belongs to no committed object and no put in flight.
    fn count_orphans(&self) -> Result<u64> {
        let mut live = BTreeMap::new();
        for item in self.objects.iter().values() {
            let v = item.map_err(|e| self.db_err(e))?;
            let rec = ObjectRecord::decode(&v).map_err(StoreError::Corrupt)?;
            live.insert(rec.handle, ());
        }
        for (_, _, rec) in self.held_entries(None)? {
            live.insert(rec.handle, ());
        }
        let mut orphans = 0;
        for item in self.blocks.iter().keys() {
            let k = item.map_err(|e| self.db_err(e))?;
            let Ok((handle, _, _)) = parse_block_key(&k) else {
                orphans += 1;
                continue;
            };
            if !live.contains_key(&handle)
                && !self.pending.contains_key(handle.to_be_bytes()).map_err(|e| self.db_err(e))?
            {
                orphans += 1;
            }
        }
        Ok(orphans)
    }

    /// Destroys shard `shard` of an object through the real store, for tests and the demo:
    /// `corrupt` flips one byte in every block, otherwise the blocks are deleted. Damages the held
    /// shard if there is one, else that shard of the whole object (as reads choose).
    #[cfg(feature = "fault-injection")]
    pub fn damage_shard(&self, id: &ObjectId, shard: u16, corrupt: bool) -> Result<u64> {
        self.damage_shard_inner(id, shard, corrupt)
    }

    /// The body of `damage_shard`, always compiled so that the storage benchmark can measure
    /// reconstruction without the `fault-injection` feature. Returns the blocks damaged.
    pub(crate) fn damage_shard_inner(&self, id: &ObjectId, shard: u16, corrupt: bool) -> Result<u64> {
        let handle = match self.held_record(id, shard)? {
            Some(rec) => rec.handle,
            None => self.object_record(id)?.handle,
        };
        let mut prefix = handle.to_be_bytes().to_vec();
        prefix.extend_from_slice(&shard.to_be_bytes());
        let mut n = 0;
        for item in self.blocks.scan_prefix(&prefix) {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if corrupt {
                let mut v = v.to_vec();
                if let Some(last) = v.last_mut() {
                    *last ^= 0xff;
                }
                self.blocks.insert(k, v).map_err(|e| self.db_err(e))?;
            } else {
                self.blocks.remove(k).map_err(|e| self.db_err(e))?;
            }
            n += 1;
        }
        self.flush()?;
        Ok(n)
    }
}
