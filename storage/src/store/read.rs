//! Reading objects back: verified block loads, reconstruction from parity, and block repair.

use std::collections::BTreeMap;
use std::io::Write;

use rayon::prelude::*;
use reed_solomon_erasure::galois_8::ReedSolomon;

use super::{Store, coder, stripes_per_batch};
use crate::error::{DecodeError, Result, StoreError};
use crate::manifest::{Geometry, Manifest, ObjectId, StripeSpan};
use crate::merkle;
use crate::records::{BlockRecord, ShardMeta, block_key};

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
    /// True if this is a single held shard: only its entry in `metas` can be `Some`, and there
    /// are no other shards here to repair it from.
    pub held: bool,
}

/// Outcome of loading one block.
pub(crate) enum Loaded {
    Good(Vec<u8>),
    Bad(String),
}

/// Per stripe, the piece of each shard (`None` where unusable).
pub(crate) type StripePieces = Vec<Vec<Option<Vec<u8>>>>;

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
            metas.push(meta.filter(|m| meta_matches(m, &manifest, i)));
        }
        Ok(ObjectCtx { id: *id, handle: rec.handle, geometry: g, metas, held: false })
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
        let wanted: Vec<u32> = blocks.filter(|b| !cache.contains_key(&(shard, *b))).collect();
        let seg = ctx.geometry.segment_size;
        // Fetch and verify on every core: sled reads overlap hashing.
        let checked: Vec<(u32, Loaded)> = wanted
            .into_par_iter()
            .map(|b| {
                let v = self.blocks.get(block_key(ctx.handle, shard, b)).map_err(|e| self.db_err(e))?;
                Ok((b, check_block(meta, b, v.as_deref(), seg)))
            })
            .collect::<Result<_>>()?;
        for (b, l) in checked {
            cache.insert((shard, b), l);
        }
        Ok(())
    }

    /// Reads an object into `out`, rebuilding stripes from parity where blocks are missing or
    /// corrupt, and rewrites every damaged block it met from the stripes it rebuilt anyway.
    pub fn get(
        &self,
        id: &ObjectId,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<GetReport> {
        let ctx = self.object_ctx(id)?;
        let g = ctx.geometry;
        let k = usize::from(g.data);
        let rs = coder(&g)?;
        let per_batch = stripes_per_batch(&g);
        let stripes = g.stripes();
        let mut rebuilder = Rebuilder::default();
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
            let mut pieces: StripePieces =
                spans.iter().map(|sp| (0..k).map(|i| piece(&ctx, &cache, i as u16, sp)).collect()).collect();
            if pieces.iter().any(|p| p.iter().any(Option::is_none)) {
                for shard in k..g.total_shards() {
                    self.load_span_blocks(&ctx, shard as u16, &spans, &mut cache)?;
                }
                let (all, n) = decode_stripes(&ctx, &rs, s, &spans, &cache, &mut rebuilder)?;
                rebuilt += n;
                pieces = all;
                rebuilder.write_complete(self, &ctx)?;
            }
            for (j, sp) in spans.iter().enumerate() {
                let mut left = sp.object_len as usize;
                for p in pieces[j].iter().take(k).flatten() {
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
        let mut damaged = rebuilder.finish(self, &ctx)?;
        // A damaged block that straddles batches may not have been rebuilt whole above
        // (the next batch needed no parity): rebuild those on their own.
        let left: BTreeMap<(u16, u32), String> =
            damaged.iter().filter(|d| !d.repaired).map(|d| ((d.shard, d.block), d.problem.clone())).collect();
        if !left.is_empty() {
            let again = self.repair_blocks(&ctx, &left)?;
            damaged.retain(|d| d.repaired);
            damaged.extend(again);
            damaged.sort_by_key(|d| (d.shard, d.block));
        }
        Ok(GetReport { id: id.to_hex(), size: g.size, stripes_reconstructed: rebuilt, damaged })
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

    /// Rebuilds the given damaged blocks from the other shards, stripe batch by stripe batch,
    /// reading each stripe once however many of its blocks are damaged.
    pub(crate) fn repair_blocks(
        &self,
        ctx: &ObjectCtx,
        damaged: &BTreeMap<(u16, u32), String>,
    ) -> Result<Vec<RepairedBlock>> {
        let g = ctx.geometry;
        let rs = coder(&g)?;
        let mut rebuilder = Rebuilder::default();
        let mut stripes = std::collections::BTreeSet::new();
        for ((shard, block), problem) in damaged {
            let Some(meta) = &ctx.metas[usize::from(*shard)] else { continue };
            let len = meta.block_len(*block);
            if len == 0 {
                continue;
            }
            rebuilder.add(ctx, *shard, *block, problem.clone());
            let start = u64::from(*block) * u64::from(meta.block_size);
            stripes.extend(g.stripe_at_shard_offset(start)..=g.stripe_at_shard_offset(start + len - 1));
        }
        let per_batch = stripes_per_batch(&g) as usize;
        let stripes: Vec<u64> = stripes.into_iter().collect();
        // Runs of consecutive stripes, at most a batch long.
        let mut runs: Vec<Vec<u64>> = Vec::new();
        for s in stripes {
            match runs.last_mut() {
                Some(r) if r.last() == Some(&(s - 1)) && r.len() < per_batch => r.push(s),
                _ => runs.push(vec![s]),
            }
        }
        for run in runs {
            let spans: Vec<StripeSpan> = run.iter().map(|s| g.stripe(*s)).collect();
            // Known-damaged blocks go in first, so loading skips reading and hashing them.
            let mut cache: BlockCache = damaged.keys().map(|k| (*k, Loaded::Bad(String::new()))).collect();
            for shard in 0..g.total_shards() as u16 {
                self.load_span_blocks(ctx, shard, &spans, &mut cache)?;
            }
            if let Err(e) = decode_stripes(ctx, &rs, run[0], &spans, &cache, &mut rebuilder) {
                tracing::warn!(object = %ctx.id, error = %e, "cannot rebuild damaged blocks");
            }
            rebuilder.write_complete(self, ctx)?;
        }
        rebuilder.finish(self, ctx)
    }
}

/// Returns every piece (all `k + m` shards) of each stripe in `spans`, rebuilding stripes that have
/// unusable pieces and handing the rebuilt pieces of damaged blocks to `rb`; also counts them.
fn decode_stripes(
    ctx: &ObjectCtx,
    rs: &ReedSolomon,
    first: u64,
    spans: &[StripeSpan],
    cache: &BlockCache,
    rb: &mut Rebuilder,
) -> Result<(StripePieces, u64)> {
    let g = ctx.geometry;
    let k = usize::from(g.data);
    for ((shard, block), l) in cache {
        if let Loaded::Bad(why) = l {
            rb.add(ctx, *shard, *block, why.clone());
        }
    }
    let mut rebuilt = 0;
    let mut out = Vec::with_capacity(spans.len());
    for (j, sp) in spans.iter().enumerate() {
        let mut all: Vec<Option<Vec<u8>>> =
            (0..g.total_shards()).map(|i| piece(ctx, cache, i as u16, sp)).collect();
        let missing: Vec<usize> = (0..all.len()).filter(|i| all[*i].is_none()).collect();
        if !missing.is_empty() {
            let good = all.len() - missing.len();
            if good < k {
                return Err(StoreError::Unrecoverable {
                    id: ctx.id,
                    stripe: first + j as u64,
                    good,
                    needed: k,
                });
            }
            rs.reconstruct(&mut all)
                .map_err(|e| StoreError::Corrupt(DecodeError::new("erasure decode", format!("{e:?}"))))?;
            for i in missing {
                if let Some(p) = &all[i] {
                    rb.feed(ctx, i as u16, sp, p);
                }
            }
            rebuilt += 1;
        }
        out.push(all);
    }
    Ok((out, rebuilt))
}

/// A damaged block being reassembled from rebuilt stripe pieces.
struct BlockBuf {
    data: Vec<u8>,
    filled: u64,
    problem: String,
}

/// Collects rebuilt bytes for damaged blocks until each is whole, then verifies and rewrites it.
#[derive(Default)]
struct Rebuilder {
    bufs: BTreeMap<(u16, u32), BlockBuf>,
    /// Blocks already rebuilt and written (or found not to match their root).
    done: Vec<RepairedBlock>,
    /// Keys of `done`, so a block met again in a later batch is not rebuilt twice.
    done_keys: std::collections::BTreeSet<(u16, u32)>,
}

impl Rebuilder {
    fn add(&mut self, ctx: &ObjectCtx, shard: u16, block: u32, problem: String) {
        let Some(meta) = &ctx.metas[usize::from(shard)] else { return };
        if self.done_keys.contains(&(shard, block)) {
            return;
        }
        self.bufs.entry((shard, block)).or_insert_with(|| BlockBuf {
            data: vec![0; meta.block_len(block) as usize],
            filled: 0,
            problem,
        });
    }

    /// Copies the part of `piece` (shard `shard`'s piece of stripe `sp`) that damaged blocks need.
    fn feed(&mut self, ctx: &ObjectCtx, shard: u16, sp: &StripeSpan, piece: &[u8]) {
        let Some(meta) = &ctx.metas[usize::from(shard)] else { return };
        let bs = u64::from(meta.block_size);
        let (lo, hi) = (sp.shard_offset, sp.shard_offset + sp.piece_len);
        for b in (lo / bs) as u32..hi.div_ceil(bs) as u32 {
            let Some(buf) = self.bufs.get_mut(&(shard, b)) else { continue };
            let start = u64::from(b) * bs;
            let from = lo.max(start);
            let to = hi.min(start + buf.data.len() as u64);
            if from >= to {
                continue;
            }
            buf.data[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&piece[(from - lo) as usize..(to - lo) as usize]);
            buf.filled += to - from;
        }
    }

    /// Writes the blocks that are whole by now (hashing and writing on every core) and forgets
    /// them, so memory stays bounded by what the current batch touches.
    fn write_complete(&mut self, store: &Store, ctx: &ObjectCtx) -> Result<()> {
        let whole: Vec<(u16, u32)> =
            self.bufs.iter().filter(|(_, b)| b.filled == b.data.len() as u64).map(|(k, _)| *k).collect();
        let bufs: Vec<((u16, u32), BlockBuf)> =
            whole.into_iter().filter_map(|k| self.bufs.remove(&k).map(|b| (k, b))).collect();
        let done: Vec<RepairedBlock> = bufs
            .into_par_iter()
            .map(|((shard, block), buf)| {
                let mut repaired = false;
                if let Some(meta) = &ctx.metas[usize::from(shard)] {
                    let height = u32::from(meta.block_height);
                    let root = merkle::subtree_root(&buf.data, ctx.geometry.segment_size, height);
                    // Only bytes that hash to the committed root ever replace a block.
                    if Some(&root) == meta.block_roots.get(block as usize) {
                        store
                            .blocks
                            .insert(
                                block_key(ctx.handle, shard, block),
                                BlockRecord::encode(meta.block_height, &root, &buf.data),
                            )
                            .map_err(|e| store.db_err(e))?;
                        repaired = true;
                    }
                }
                Ok(RepairedBlock { shard, block, problem: buf.problem, repaired })
            })
            .collect::<Result<_>>()?;
        self.done_keys.extend(done.iter().map(|d| (d.shard, d.block)));
        self.done.extend(done);
        Ok(())
    }

    /// Writes what is whole, reports every damaged block met (unfinished ones as not repaired).
    fn finish(mut self, store: &Store, ctx: &ObjectCtx) -> Result<Vec<RepairedBlock>> {
        self.write_complete(store, ctx)?;
        let mut report = std::mem::take(&mut self.done);
        let wrote = report.iter().any(|r| r.repaired);
        for ((shard, block), buf) in self.bufs {
            report.push(RepairedBlock { shard, block, problem: buf.problem, repaired: false });
        }
        report.sort_by_key(|r| (r.shard, r.block));
        if wrote {
            store.flush()?;
        }
        Ok(report)
    }
}

/// True if a shard's metadata agrees with the manifest: right length, and its block roots fold
/// into the committed root of shard `i`.
pub(crate) fn meta_matches(m: &ShardMeta, manifest: &Manifest, i: usize) -> bool {
    let g = &manifest.geometry;
    let depth = merkle::tree_depth(m.len, g.segment_size);
    let height = u32::from(m.block_height);
    // A row wider than the tree cannot fold into it (guards fold_to_root against corrupt records).
    m.len == g.shard_len()
        && height <= depth
        && m.block_roots.len() as u64 <= 1u64 << (depth - height)
        && manifest
            .shard_roots
            .get(i)
            .is_some_and(|root| merkle::fold_to_root(m.block_roots.clone(), height, depth) == *root)
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

impl Store {
    /// Proof that segment `index` of shard `shard` of `id` is committed by the manifest's shard
    /// root. Reads one block and the shard's block roots, never the whole shard. Works for a
    /// held shard (preferred) and for a shard of a locally stored whole object.
    pub fn prove_segment(&self, id: &ObjectId, shard: u16, index: u64) -> Result<merkle::SegmentProof> {
        let ctx = self.shard_ctx(id, shard)?;
        let bad = |why: &str| StoreError::Params(DecodeError::new("proof request", why));
        if usize::from(shard) >= ctx.geometry.total_shards() {
            return Err(bad("no such shard"));
        }
        let meta = ctx.metas[usize::from(shard)]
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt(DecodeError::new("shard metadata", "missing")))?;
        let seg = ctx.geometry.segment_size;
        if index >= merkle::leaf_count(meta.len, seg) {
            return Err(bad("segment index past the end of the shard"));
        }
        let block = (index >> meta.block_height) as u32;
        let mut cache = BlockCache::new();
        self.load_blocks(&ctx, shard, block..block + 1, &mut cache)?;
        let data = match cache.remove(&(shard, block)) {
            Some(Loaded::Good(data)) => data,
            Some(Loaded::Bad(problem)) if ctx.held => {
                return Err(StoreError::DamagedBlock { object: id.to_hex(), shard, block, problem });
            }
            _ => {
                return Err(StoreError::Corrupt(DecodeError::new(
                    "block",
                    "damaged; read or scrub the object to repair it first",
                )));
            }
        };
        merkle::prove_segment(index, &data, u32::from(meta.block_height), &meta.block_roots, meta.len, seg)
            .ok_or_else(|| bad("segment not in the block"))
    }
}
