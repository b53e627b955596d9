//! Background re-verification of every stored block, resumable, repairing from parity.
//!
//! The scrubber walks the `blocks` tree in key order from a cursor saved in the `meta` tree, so a
//! restart resumes where the last run stopped instead of starting over. Each block is checked
//! against its shard's committed block root; a bad block is rebuilt from the other shards of its
//! stripes and rewritten only if the rebuilt bytes hash to the committed root. Blocks of held
//! shards are walked the same way, but a bad one cannot be rebuilt here (no other shards of its
//! object are held): it is counted damaged and unrepairable, logged, and left in place.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::Store;
use super::read::{Loaded, ObjectCtx, check_block};
use crate::error::{Result, StoreError};
use crate::records::{ShardMeta, parse_block_key};

const CURSOR: &[u8] = b"scrub_cursor";

/// Running totals of the scrubber, exported as metrics.
#[derive(Debug, Default)]
pub struct ScrubStats {
    /// Blocks verified since start.
    pub blocks_verified: AtomicU64,
    /// Bytes verified since start.
    pub bytes_verified: AtomicU64,
    /// Damaged blocks found.
    pub damaged_found: AtomicU64,
    /// Damaged blocks rebuilt from parity and rewritten.
    pub repaired: AtomicU64,
    /// Damaged blocks that could not be rebuilt.
    pub unrepairable: AtomicU64,
    /// Complete passes over the store.
    pub passes_completed: AtomicU64,
}

/// A point-in-time copy of [`ScrubStats`], for status reports and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScrubCounts {
    /// Blocks verified since start.
    pub blocks_verified: u64,
    /// Bytes verified since start.
    pub bytes_verified: u64,
    /// Damaged blocks found.
    pub damaged_found: u64,
    /// Damaged blocks rebuilt from parity and rewritten.
    pub repaired: u64,
    /// Damaged blocks that could not be rebuilt.
    pub unrepairable: u64,
    /// Complete passes over the store.
    pub passes_completed: u64,
}

impl ScrubStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> ScrubCounts {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ScrubCounts {
            blocks_verified: ld(&self.blocks_verified),
            bytes_verified: ld(&self.bytes_verified),
            damaged_found: ld(&self.damaged_found),
            repaired: ld(&self.repaired),
            unrepairable: ld(&self.unrepairable),
            passes_completed: ld(&self.passes_completed),
        }
    }
}

/// What one scrub call did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScrubSummary {
    /// Blocks verified.
    pub blocks: u64,
    /// Bytes verified.
    pub bytes: u64,
    /// Damaged blocks found.
    pub damaged: u64,
    /// Of those, repaired.
    pub repaired: u64,
    /// Of those, beyond repair.
    pub unrepairable: u64,
    /// True if the walk reached the end of the store (and the next starts from the beginning).
    pub pass_complete: bool,
}

impl Store {
    /// Verifies blocks from the saved cursor until about `max_bytes` are checked or the pass ends.
    pub fn scrub_step(&self, max_bytes: u64) -> Result<ScrubSummary> {
        let cursor = self.meta.get(CURSOR).map_err(|e| self.db_err(e))?;
        let start = match &cursor {
            Some(c) => Bound::Excluded(c.to_vec()),
            None => Bound::Unbounded,
        };
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        let mut last_key = None;
        let mut pass_complete = true;
        for item in self.blocks.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            bytes += v.len() as u64;
            last_key = Some(k.clone());
            batch.push((k, v));
            if bytes >= max_bytes {
                pass_complete = false;
                break;
            }
        }

        let mut ctxs: HashMap<u64, Option<ObjectCtx>> = HashMap::new();
        let mut metas: HashMap<(u64, u16), Option<ShardMeta>> = HashMap::new();
        let mut keys = Vec::with_capacity(batch.len());
        for (k, v) in &batch {
            let Ok((handle, shard, block)) = parse_block_key(k) else { continue };
            if let std::collections::hash_map::Entry::Vacant(e) = metas.entry((handle, shard)) {
                e.insert(self.shard_meta(handle, shard)?);
            }
            if let (Some(Some(meta)), false) = (metas.get(&(handle, shard)), ctxs.contains_key(&handle)) {
                // Objects and shards being written or removed are skipped; they have no committed
                // context.
                let ctx = match self.object_ctx(&meta.object) {
                    Ok(c) if c.handle == handle => Some(c),
                    Ok(_) | Err(StoreError::NotFound(_)) => match self.held_record(&meta.object, shard)? {
                        Some(rec) if rec.handle == handle => {
                            Some(self.held_ctx(&meta.object, shard, &rec)?)
                        }
                        _ => None,
                    },
                    Err(e) => return Err(e),
                };
                ctxs.insert(handle, ctx);
            }
            keys.push((handle, shard, block, v));
        }
        let mut work = Vec::with_capacity(keys.len());
        for (handle, shard, block, v) in keys {
            let (Some(Some(meta)), Some(Some(ctx))) = (metas.get(&(handle, shard)), ctxs.get(&handle)) else {
                continue;
            };
            work.push((handle, shard, block, meta, ctx.geometry.segment_size, v));
        }
        let checked: Vec<(u64, u16, u32, u64, bool)> = work
            .into_par_iter()
            .map(|(h, s, b, meta, seg, v)| {
                let ok = matches!(check_block(meta, b, Some(v), seg), Loaded::Good(_));
                (h, s, b, meta.block_len(b), ok)
            })
            .collect();

        let stats = self.scrub_stats();
        let mut sum = ScrubSummary { pass_complete, ..Default::default() };
        let mut damaged: BTreeMap<u64, BTreeMap<(u16, u32), String>> = BTreeMap::new();
        for (handle, shard, block, len, ok) in checked {
            sum.blocks += 1;
            sum.bytes += len;
            if !ok {
                sum.damaged += 1;
                damaged.entry(handle).or_default().insert((shard, block), "damaged".into());
            }
        }
        // Rebuild each object's damaged blocks together, reading each stripe once.
        for (handle, blocks) in damaged {
            let Some(Some(ctx)) = ctxs.get(&handle) else { continue };
            if ctx.held {
                for ((shard, block), _) in blocks {
                    sum.unrepairable += 1;
                    tracing::error!(object = %ctx.id, shard, block,
                        "scrub found a damaged block of a held shard; it cannot be repaired here (no other shards held)");
                }
                continue;
            }
            for r in self.repair_blocks(ctx, &blocks)? {
                if r.repaired {
                    sum.repaired += 1;
                    tracing::warn!(object = %ctx.id, shard = r.shard, block = r.block, "scrub repaired a damaged block");
                } else {
                    sum.unrepairable += 1;
                    tracing::error!(object = %ctx.id, shard = r.shard, block = r.block, "scrub found a block it cannot repair");
                }
            }
        }
        stats.blocks_verified.fetch_add(sum.blocks, Ordering::Relaxed);
        stats.bytes_verified.fetch_add(sum.bytes, Ordering::Relaxed);
        stats.damaged_found.fetch_add(sum.damaged, Ordering::Relaxed);
        stats.repaired.fetch_add(sum.repaired, Ordering::Relaxed);
        stats.unrepairable.fetch_add(sum.unrepairable, Ordering::Relaxed);

        if pass_complete {
            self.meta.remove(CURSOR).map_err(|e| self.db_err(e))?;
            stats.passes_completed.fetch_add(1, Ordering::Relaxed);
        } else if let Some(k) = last_key {
            self.meta.insert(CURSOR, k).map_err(|e| self.db_err(e))?;
        }
        if sum.repaired > 0 {
            self.flush()?;
        }
        Ok(sum)
    }

    /// Runs scrub steps until the pass completes or `stop()` says so, at most `rate` bytes/s
    /// (unlimited if `None`). `progress` sees the running summary after each step.
    pub fn scrub_pass(
        &self,
        rate: Option<u64>,
        stop: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(&ScrubSummary),
    ) -> Result<ScrubSummary> {
        let step = rate.map_or(16 << 20, |r| (r / 4).clamp(64 << 10, 16 << 20));
        let started = Instant::now();
        let mut total = ScrubSummary::default();
        loop {
            if stop() {
                break;
            }
            let s = self.scrub_step(step)?;
            total.blocks += s.blocks;
            total.bytes += s.bytes;
            total.damaged += s.damaged;
            total.repaired += s.repaired;
            total.unrepairable += s.unrepairable;
            total.pass_complete = s.pass_complete;
            progress(&total);
            if s.pass_complete {
                break;
            }
            if let Some(r) = rate.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(total.bytes as f64 / r as f64);
                let elapsed = started.elapsed();
                if due > elapsed {
                    // Sleep in short slices so `stop` is honoured promptly.
                    let mut left = due - elapsed;
                    while left > Duration::ZERO && !stop() {
                        let nap = left.min(Duration::from_millis(100));
                        std::thread::sleep(nap);
                        left = left.saturating_sub(nap);
                    }
                }
            }
        }
        // The cursor is saved every step; make it durable so a restart resumes here.
        self.flush()?;
        Ok(total)
    }
}
