//! Reading objects back: verified block loads, reconstruction from parity, and block repair.

use std::collections::BTreeMap;
use std::io::Write;

use rayon::prelude::*;
use reed_solomon_erasure::galois_8::ReedSolomon;

use super::Store;
use crate::error::{DecodeError, Result, StoreError};
use crate::manifest::{Geometry, ObjectId, StripeSpan};
use crate::merkle;
use crate::records::{BlockRecord, ShardMeta, block_key};

/// Object bytes read per batch.
const BATCH_BYTES: u64 = 16 << 20;

/// A block that a read found damaged and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RepairedBlock {
    /// Shard index.
    pub shard: u16,
    /// Block number within the shard.
    pub block: u32,
    /// Why it was unusable: `missing`, `corrupt` or a decode error.
    pub problem: String,
    /// True once a rebuilt, verified block replaced it.
    pub repaired: bool,
}

/// What a get did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GetReport {
    /// The object id (hex).
    pub id: String,
    /// Bytes written.
    pub size: u64,
    /// Stripes that had to be rebuilt from parity.
    pub stripes_reconstructed: u64,
    /// Damaged blocks found, each with whether it was repaired.
    pub damaged: Vec<RepairedBlock>,
}

/// Everything needed to read one object.
pub(crate) struct ObjectCtx {
    pub id: ObjectId,
    pub handle: u64,
    pub geometry: Geometry,
    /// Per shard; `None` if its metadata is gone (treated as a lost shard).
    pub metas: Vec<Option<ShardMeta>>,
}

/// Outcome of loading one block.
pub(crate) enum Loaded {
    Good(Vec<u8>),
    Bad(String),
}

/// Verified blocks of some shards, by (shard, block).
pub(crate) type BlockCache = BTreeMap<(u16, u32), Loaded>;

impl Store {
    pub(crate) fn object_ctx(&self, id: &ObjectId) -> Result<ObjectCtx> {
        let rec = self.object_record(id)?;
        let manifest = self.manifest(id)?;
        let g = manifest.geometry;
        let mut metas = Vec::with_capacity(g.total_shards());
        for i in 0..g.total_shards() {
            let meta = self.shard_meta(rec.handle, i as u16)?;
            // Metadata that disagrees with the manifest is as good as lost.
            metas.push(meta.filter(|m| {
                m.len == g.shard_len()
                    && merkle::fold_to_root(
                        m.block_roots.clone(),
                        u32::from(m.block_height),
                        merkle::tree_depth(m.len, g.segment_size),
                    ) == manifest.shard_roots[i]
            }));
        }
        Ok(ObjectCtx { id: *id, handle: rec.handle, geometry: g, metas })
    }

    /// Loads and verifies blocks `blocks` of `shard`, hashing on every core.
    pub(crate) fn load_blocks(
        &self,
        ctx: &ObjectCtx,
        shard: u16,
        blocks: std::ops::Range<u32>,
        cache: &mut BlockCache,
    ) -> Result<()> {
        let Some(meta) = &ctx.metas[usize::from(shard)] else {
            for b in blocks {
                cache.insert((shard, b), Loaded::Bad("shard metadata missing".into()));
            }
            return Ok(());
        };
        let mut raw = Vec::new();
        for b in blocks.filter(|b| !cache.contains_key(&(shard, *b))) {
            let v = self.blocks.get(block_key(ctx.handle, shard, b)).map_err(|e| self.db_err(e))?;
            raw.push((b, v));
        }
        let seg = ctx.geometry.segment_size;
        let checked: Vec<(u32, Loaded)> =
            raw.into_par_iter().map(|(b, v)| (b, check_block(meta, b, v.as_deref(), seg))).collect();
        for (b, l) in checked {
            cache.insert((shard, b), l);
        }
        Ok(())
    }

    /// Reads an object into `out`, rebuilding stripes from parity where blocks are missing or
    /// corrupt, then repairs the damaged blocks it found.
    pub fn get(
        &self,
        id: &ObjectId,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<GetReport> {
        let ctx = self.object_ctx(id)?;
        let g = ctx.geometry;
        let k = usize::from(g.data);
        let n = g.total_shards();
        let rs = ReedSolomon::new(k, usize::from(g.parity))
            .map_err(|e| StoreError::Corrupt(DecodeError::new("manifest", format!("{e:?}"))))?;
        let per_batch = (BATCH_BYTES / u64::from(g.stripe_size)).max(1);
        let stripes = g.stripes();
        let mut damaged: BTreeMap<(u16, u32), String> = BTreeMap::new();
        let mut rebuilt = 0u64;
        let mut written = 0u64;
        let mut s = 0;
        while s < stripes {
            let end = (s + per_batch).min(stripes);
            let spans: Vec<StripeSpan> = (s..end).map(|i| g.stripe(i)).collect();
            let mut cache = BlockCache::new();
            // Data shards first; parity only if some data piece is unusable.
            for shard in 0..k {
                self.load_span_blocks(&ctx, shard as u16, &spans, &mut cache)?;
            }
            let mut pieces: Vec<Vec<Option<Vec<u8>>>> =
                spans.iter().map(|sp| (0..k).map(|i| piece(&ctx, &cache, i as u16, sp)).collect()).collect();
            if pieces.iter().any(|p| p.iter().any(Option::is_none)) {
                for shard in k..n {
                    self.load_span_blocks(&ctx, shard as u16, &spans, &mut cache)?;
                }
                for (j, sp) in spans.iter().enumerate() {
                    if pieces[j].iter().all(Option::is_some) {
                        continue;
                    }
                    let mut all: Vec<Option<Vec<u8>>> =
                        (0..n).map(|i| piece(&ctx, &cache, i as u16, sp)).collect();
                    let good = all.iter().filter(|p| p.is_some()).count();
                    if good < k {
                        return Err(StoreError::Unrecoverable {
                            id: *id,
                            stripe: s + j as u64,
                            good,
                            needed: k,
                        });
                    }
                    rs.reconstruct_data(&mut all).map_err(|e| {
                        StoreError::Corrupt(DecodeError::new("erasure decode", format!("{e:?}")))
                    })?;
                    all.truncate(k);
                    pieces[j] = all;
                    rebuilt += 1;
                }
            }
            for ((shard, block), l) in &cache {
                if let Loaded::Bad(why) = l {
                    damaged.insert((*shard, *block), why.clone());
                }
            }
            for (j, sp) in spans.iter().enumerate() {
                let mut left = sp.object_len as usize;
                for p in pieces[j].iter().flatten() {
                    let take = left.min(p.len());
                    out.write_all(&p[..take]).map_err(StoreError::Output)?;
                    left -= take;
                }
                written += sp.object_len;
            }
            progress(written);
            s = end;
        }
        out.flush().map_err(StoreError::Output)?;

        let mut report =
            GetReport { id: id.to_hex(), size: g.size, stripes_reconstructed: rebuilt, damaged: Vec::new() };
        for ((shard, block), problem) in damaged {
            let repaired = match self.repair_block(&ctx, shard, block) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(object = %id, shard, block, error = %e, "block repair failed");
                    false
                }
            };
            report.damaged.push(RepairedBlock { shard, block, problem, repaired });
        }
        if !report.damaged.is_empty() {
            self.flush()?;
        }
        Ok(report)
    }

    /// Loads the blocks of `shard` that the stripes in `spans` touch.
    fn load_span_blocks(
        &self,
        ctx: &ObjectCtx,
        shard: u16,
        spans: &[StripeSpan],
        cache: &mut BlockCache,
    ) -> Result<()> {
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else { return Ok(()) };
        let bs = ctx.metas[usize::from(shard)]
            .as_ref()
            .map_or(u64::from(self.block_size), |m| u64::from(m.block_size));
        let lo = (first.shard_offset / bs) as u32;
        let end = last.shard_offset + last.piece_len;
        let hi = end.div_ceil(bs) as u32;
        self.load_blocks(ctx, shard, lo..hi, cache)
    }

    /// Rebuilds block `block` of `shard` from the other shards and writes it, if it verifies.
    pub(crate) fn repair_block(&self, ctx: &ObjectCtx, shard: u16, block: u32) -> Result<()> {
        let g = ctx.geometry;
        let meta = ctx.metas[usize::from(shard)].as_ref().ok_or_else(|| {
            StoreError::Corrupt(DecodeError::new("shard metadata", "missing; cannot repair"))
        })?;
        let bs = u64::from(meta.block_size);
        let start = u64::from(block) * bs;
        let len = meta.block_len(block);
        if len == 0 {
            return Err(StoreError::Corrupt(DecodeError::new("block", "number past the end of the shard")));
        }
        let first = g.stripe_at_shard_offset(start);
        let last = g.stripe_at_shard_offset(start + len - 1);
        let spans: Vec<StripeSpan> = (first..=last).map(|s| g.stripe(s)).collect();
        let n = g.total_shards();
        let rs = ReedSolomon::new(usize::from(g.data), usize::from(g.parity))
            .map_err(|e| StoreError::Corrupt(DecodeError::new("manifest", format!("{e:?}"))))?;
        let mut cache = BlockCache::new();
        for i in (0..n as u16).filter(|i| *i != shard) {
            self.load_span_blocks(ctx, i, &spans, &mut cache)?;
        }
        let mut data = vec![0u8; len as usize];
        for (j, sp) in spans.iter().enumerate() {
            let mut all: Vec<Option<Vec<u8>>> = (0..n)
                .map(|i| if i as u16 == shard { None } else { piece(ctx, &cache, i as u16, sp) })
                .collect();
            let good = all.iter().filter(|p| p.is_some()).count();
            if good < usize::from(g.data) {
                return Err(StoreError::Unrecoverable {
                    id: ctx.id,
                    stripe: first + j as u64,
                    good,
                    needed: usize::from(g.data),
                });
            }
            rs.reconstruct(&mut all)
                .map_err(|e| StoreError::Corrupt(DecodeError::new("erasure decode", format!("{e:?}"))))?;
            let p = all[usize::from(shard)].as_ref().ok_or_else(|| {
                StoreError::Corrupt(DecodeError::new("erasure decode", "shard not rebuilt"))
            })?;
            // Copy the part of this stripe's piece that falls inside the block.
            let lo = sp.shard_offset.max(start);
            let hi = (sp.shard_offset + sp.piece_len).min(start + len);
            data[(lo - start) as usize..(hi - start) as usize]
                .copy_from_slice(&p[(lo - sp.shard_offset) as usize..(hi - sp.shard_offset) as usize]);
        }
        let height = u32::from(meta.block_height);
        let root = merkle::subtree_root(&data, g.segment_size, height);
        if Some(&root) != meta.block_roots.get(block as usize) {
            return Err(StoreError::Corrupt(DecodeError::new(
                "repair",
                "rebuilt block does not match its root",
            )));
        }
        self.blocks
            .insert(block_key(ctx.handle, shard, block), BlockRecord::encode(meta.block_height, &root, &data))
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }
}

/// Verifies a raw block record against the shard's metadata.
pub(crate) fn check_block(meta: &ShardMeta, b: u32, raw: Option<&[u8]>, segment_size: u32) -> Loaded {
    let Some(raw) = raw else { return Loaded::Bad("missing".into()) };
    let rec = match BlockRecord::decode(raw) {
        Ok(r) => r,
        Err(e) => return Loaded::Bad(e.to_string()),
    };
    let Some(expected) = meta.block_roots.get(b as usize) else {
        return Loaded::Bad("block number past the end of the shard".into());
    };
    if rec.data.len() as u64 != meta.block_len(b) || rec.height != meta.block_height {
        return Loaded::Bad("wrong length".into());
    }
    let root = merkle::subtree_root(rec.data, segment_size, u32::from(meta.block_height));
    if &root != expected || root != rec.root {
        return Loaded::Bad("corrupt (hash mismatch)".into());
    }
    Loaded::Good(rec.data.to_vec())
}

/// The bytes of `shard` for stripe `sp`, if every block they span verified.
pub(crate) fn piece(ctx: &ObjectCtx, cache: &BlockCache, shard: u16, sp: &StripeSpan) -> Option<Vec<u8>> {
    let bs = u64::from(ctx.metas[usize::from(shard)].as_ref()?.block_size);
    let mut out = Vec::with_capacity(sp.piece_len as usize);
    let end = sp.shard_offset + sp.piece_len;
    let mut off = sp.shard_offset;
    while off < end {
        let b = (off / bs) as u32;
        let Loaded::Good(data) = cache.get(&(shard, b))? else { return None };
        let lo = (off - u64::from(b) * bs) as usize;
        let hi = ((end - u64::from(b) * bs) as usize).min(data.len());
        if lo >= hi {
            return None;
        }
        out.extend_from_slice(&data[lo..hi]);
        off += (hi - lo) as u64;
    }
    Some(out)
}
