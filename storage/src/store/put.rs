//! Storing an object: stripe, encode, hash blocks in parallel, write, commit.

use std::io::Read;

use rayon::prelude::*;

use super::{Store, coder, now_unix, stripes_per_batch};
use crate::error::{DecodeError, Result, StoreError};
use crate::manifest::{Geometry, Manifest};
use crate::merkle::{self, Hash};
use crate::records::{BlockRecord, ObjectRecord, ShardMeta, block_key, shard_key};

/// Coding parameters of a put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutParams {
    /// Data shards per stripe (k).
    pub data: u16,
    /// Parity shards per stripe (m).
    pub parity: u16,
    /// Requested object bytes per stripe; rounded up to a multiple of k.
    pub stripe_size: u32,
    /// Proof segment size.
    pub segment_size: u32,
}

/// What a put did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PutReport {
    /// The object id (hex).
    pub id: String,
    /// Object size.
    pub size: u64,
    /// Shard bytes stored for it (all k + m shards).
    pub stored_bytes: u64,
    /// Data and parity shards.
    pub data: u16,
    /// Parity shards.
    pub parity: u16,
    /// The effective stripe size.
    pub stripe_size: u32,
    /// True if an identical object was already stored and nothing new was written.
    pub deduplicated: bool,
}

/// Accumulates one shard's bytes into fixed-size blocks.
struct ShardWriter {
    buf: Vec<u8>,
    next_block: u32,
    roots: Vec<Hash>,
}

/// A block ready to be hashed and written.
struct PendingBlock {
    shard: u16,
    block: u32,
    data: Vec<u8>,
}

impl Store {
    /// Stores `size` bytes read from `input`; returns once the object is durable.
    ///
    /// `progress` is called with the number of object bytes consumed so far. A crash at any point
    /// leaves the object either fully stored or absent.
    pub fn put(
        &self,
        input: &mut dyn Read,
        size: u64,
        params: PutParams,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PutReport> {
        let geometry = Geometry {
            size,
            data: params.data,
            parity: params.parity,
            stripe_size: Geometry::round_stripe(params.stripe_size, params.data),
            segment_size: params.segment_size,
        };
        geometry.validate().map_err(StoreError::Params)?;
        if self.block_size < geometry.segment_size {
            return Err(StoreError::Params(DecodeError::new(
                "block size",
                "must be at least the segment size",
            )));
        }
        let shard_len = geometry.shard_len();
        let stored = shard_len * geometry.total_shards() as u64;
        let _reservation = self.reserve(stored)?;
        let handle = self.begin()?;
        match self.write_object(handle, input, &geometry, progress) {
            Ok(manifest) => self.finish_put(handle, manifest, stored),
            Err(e) => {
                self.abort(handle);
                Err(e)
            }
        }
    }

    fn finish_put(&self, handle: u64, manifest: Manifest, stored: u64) -> Result<PutReport> {
        let id = manifest.object_id();
        let g = manifest.geometry;
        let report = |deduplicated| PutReport {
            id: id.to_hex(),
            size: g.size,
            stored_bytes: stored,
            data: g.data,
            parity: g.parity,
            stripe_size: g.stripe_size,
            deduplicated,
        };
        if self.contains(&id)? {
            self.abort(handle);
            self.flush()?;
            return Ok(report(true));
        }
        let rec = ObjectRecord { handle, stored_bytes: stored, created_unix: now_unix() };
        if let Err(e) = self.commit(&id, &manifest.encode(), &rec) {
            self.abort(handle);
            return Err(e);
        }
        tracing::debug!(object = %id, size = g.size, "object stored");
        Ok(report(false))
    }

    /// Writes every block and shard record of the object under `handle`; returns its manifest.
    fn write_object(
        &self,
        handle: u64,
        input: &mut dyn Read,
        g: &Geometry,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Manifest> {
        let n = g.total_shards();
        let k = usize::from(g.data);
        let rs = coder(g)?;
        let depth = merkle::tree_depth(g.shard_len(), g.segment_size);
        let block_height = (self.block_size / g.segment_size).trailing_zeros().min(depth);
        let mut writers: Vec<ShardWriter> =
            (0..n).map(|_| ShardWriter { buf: Vec::new(), next_block: 0, roots: Vec::new() }).collect();

        let stripes = g.stripes();
        let per_batch = stripes_per_batch(g);
        let mut done = 0u64;
        let mut s = 0u64;
        let mut input_buf = Vec::new();
        while s < stripes {
            let end = (s + per_batch).min(stripes);
            let spans: Vec<_> = (s..end).map(|i| g.stripe(i)).collect();
            let bytes: u64 = spans.iter().map(|sp| sp.object_len).sum();
            input_buf.resize(bytes as usize, 0);
            input.read_exact(&mut input_buf).map_err(StoreError::Input)?;

            // Encode the batch's stripes in parallel.
            let base = spans[0].object_offset;
            let coded: Vec<Vec<Vec<u8>>> = spans
                .par_iter()
                .map(|sp| {
                    let start = (sp.object_offset - base) as usize;
                    crate::coding::code_stripe(
                        &rs,
                        &input_buf[start..start + sp.object_len as usize],
                        sp,
                        n,
                        k,
                    )
                })
                .collect::<Result<_>>()?;

            let last_batch = end == stripes;
            let mut ready = Vec::new();
            for (i, w) in writers.iter_mut().enumerate() {
                for stripe in &coded {
                    w.buf.extend_from_slice(&stripe[i]);
                }
                take_blocks(i as u16, w, self.block_size as usize, last_batch, &mut ready);
            }
            self.write_blocks(handle, ready, g.segment_size, block_height, &mut writers)?;
            done += bytes;
            progress(done);
            s = end;
        }

        let roots: Vec<Hash> =
            writers.iter().map(|w| merkle::fold_to_root(w.roots.clone(), block_height, depth)).collect();
        let manifest = Manifest { geometry: *g, shard_roots: roots };
        let object = manifest.object_id();
        let mut batch = sled::Batch::default();
        for (i, w) in writers.into_iter().enumerate() {
            let meta = ShardMeta {
                object,
                len: g.shard_len(),
                block_size: self.block_size,
                block_height: block_height as u8,
                block_roots: w.roots,
            };
            batch.insert(&shard_key(handle, i as u16), meta.encode());
        }
        self.shards.apply_batch(batch).map_err(|e| self.db_err(e))?;
        Ok(manifest)
    }

    /// Hashes ready blocks on every core and writes them.
    fn write_blocks(
        &self,
        handle: u64,
        ready: Vec<PendingBlock>,
        segment_size: u32,
        height: u32,
        writers: &mut [ShardWriter],
    ) -> Result<()> {
        // Each worker hashes a block and writes it at once, so hashing on one core overlaps
        // sled's write of a block on the other. Roots come back in input order.
        let roots: Vec<(u16, u32, Hash)> = ready
            .into_par_iter()
            .map(|b| {
                let root = merkle::subtree_root(&b.data, segment_size, height);
                self.blocks
                    .insert(
                        block_key(handle, b.shard, b.block),
                        BlockRecord::encode(height as u8, &root, &b.data),
                    )
                    .map_err(|e| self.db_err(e))?;
                Ok((b.shard, b.block, root))
            })
            .collect::<Result<_>>()?;
        for (shard, block, root) in roots {
            debug_assert_eq!(writers[usize::from(shard)].roots.len(), block as usize);
            writers[usize::from(shard)].roots.push(root);
        }
        Ok(())
    }
}

/// Moves every full block (and, at the end, the short last one) out of a shard writer.
fn take_blocks(shard: u16, w: &mut ShardWriter, block: usize, last: bool, out: &mut Vec<PendingBlock>) {
    let mut off = 0;
    while w.buf.len() - off >= block || (last && off < w.buf.len()) {
        let end = (off + block).min(w.buf.len());
        out.push(PendingBlock { shard, block: w.next_block, data: w.buf[off..end].to_vec() });
        w.next_block += 1;
        off = end;
    }
    w.buf.drain(..off);
}
