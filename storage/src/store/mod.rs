//! The sled-backed shard store: opening, crash recovery, accounting, listing and removal.
//!
//! Trees: `blocks` (shard data), `shards` (per-shard metadata and block roots), `manifests`,
//! `objects` (committed objects with their local handle and size), `held` (single shards held
//! without the rest of their object, keyed by object id and shard index), `counters` (used bytes, object and held-shard
//! counts, next handle), `pending` (puts and removals in flight) and `meta` (scrub cursor). Trees
//! named `agent/...` belong to the agent ([`Store::agent_tree`]).
//!
//! Crash safety rests on one ordering rule: a handle is recorded in `pending` and flushed *before*
//! any of its blocks is written, and an object becomes visible only in the transaction that removes
//! it from `pending`. Opening the store deletes everything belonging to a pending handle, so a crash
//! at any point leaves either the whole object or none of it, and the counters (changed only inside
//! that same transaction) stay exact. A held shard follows the same protocol under a handle of
//! its own.

#[cfg(test)]
mod crash_tests;
mod held;
mod held_put;
mod put;
pub(crate) mod read;
mod scrub;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reed_solomon_erasure::galois_8::ReedSolomon;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::{Transactional, Tree};

pub use held::ShardInfo;
pub use held_put::ShardPutReport;
pub use put::{PutParams, PutReport};
pub use read::{GetReport, RepairedBlock};
pub use verify::{BadBlock, VerifyReport};

use crate::error::{DecodeError, Result, StoreError, is_disk_full};
use crate::manifest::{Geometry, Manifest, ObjectId};
use crate::records::{ObjectRecord, ShardMeta, decode_u64};
pub use scrub::{ScrubCounts, ScrubStats, ScrubSummary};

const USED: &[u8] = b"used_bytes";
/// Object bytes coded or decoded per batch: enough to keep every core hashing, small enough to
/// bound memory.
const BATCH_BYTES: u64 = 16 << 20;
const OBJECTS: &[u8] = b"objects";
const NEXT_HANDLE: &[u8] = b"next_handle";
/// Counter of held shards.
const SHARDS: &[u8] = b"shards";

/// Settings the store is opened with.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory of the sled database (created if missing).
    pub path: PathBuf,
    /// Most shard bytes the store may hold.
    pub capacity: u64,
    /// Size of a stored block (a power-of-two multiple of the segment size).
    pub block_size: u32,
    /// sled page-cache size in bytes.
    pub cache_bytes: u64,
    /// Bytes to keep free on the filesystem. sled 0.34 can corrupt its log when a write fails
    /// with ENOSPC, so the store refuses puts that could bring the disk near full.
    pub disk_reserve: u64,
}

/// Disk bytes budgeted per shard byte: sled's measured overhead is 1.3-1.5x for 16-100 KiB
/// values and more for small objects, so plan for twice the data.
pub const DISK_BYTES_PER_STORED_BYTE: u64 = 2;

/// Space accounting of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Shard bytes held by committed objects and held shards.
    pub used_bytes: u64,
    /// The configured capacity.
    pub capacity_bytes: u64,
    /// `capacity - used`, never negative.
    pub free_bytes: u64,
    /// Committed objects.
    pub objects: u64,
    /// Single shards held without their object (their bytes are in `used_bytes`).
    pub shards: u64,
}

/// One line of `store ls`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ObjectInfo {
    /// Object id (hex).
    pub id: String,
    /// Object size in bytes.
    pub size: u64,
    /// Data shards.
    pub data: u16,
    /// Parity shards.
    pub parity: u16,
    /// Shard bytes stored for it.
    pub stored_bytes: u64,
    /// When it was stored (Unix seconds).
    pub created_unix: u64,
}

/// A local, durable, self-verifying store of erasure-coded objects.
///
/// All methods block (disk, hashing, coding): call them from a blocking thread, never from an
/// async worker.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    blocks: Tree,
    shards: Tree,
    manifests: Tree,
    objects: Tree,
    held: Tree,
    counters: Tree,
    pending: Tree,
    meta: Tree,
    capacity: u64,
    block_size: u32,
    disk_reserve: u64,
    /// Bytes promised to puts in progress, so concurrent puts cannot overshoot the capacity.
    reserved: Mutex<u64>,
    scrub_stats: Arc<ScrubStats>,
}

impl Store {
    /// Opens (or creates) the store and finishes or rolls back whatever a crash interrupted.
    pub fn open(cfg: &StoreConfig) -> Result<Self> {
        if !cfg.block_size.is_power_of_two() || !(1024..=(16 << 20)).contains(&cfg.block_size) {
            return Err(StoreError::Params(DecodeError::new(
                "block size",
                "must be a power of two between 1 KiB and 16 MiB",
            )));
        }
        std::fs::create_dir_all(&cfg.path)
            .map_err(|source| StoreError::Open { path: cfg.path.clone(), source })?;
        let db = open_db(cfg)?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| StoreError::from_db(e, &cfg.path));
        let store = Store {
            blocks: tree("blocks")?,
            shards: tree("shards")?,
            manifests: tree("manifests")?,
            objects: tree("objects")?,
            held: tree("held")?,
            counters: tree("counters")?,
            pending: tree("pending")?,
            meta: tree("meta")?,
            db,
            path: cfg.path.clone(),
            capacity: cfg.capacity,
            block_size: cfg.block_size,
            disk_reserve: cfg.disk_reserve,
            reserved: Mutex::new(0),
            scrub_stats: Arc::new(ScrubStats::default()),
        };
        store.recover()?;
        Ok(store)
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters shared with the scrubber and exported as metrics.
    pub fn scrub_stats(&self) -> Arc<ScrubStats> {
        self.scrub_stats.clone()
    }

    pub(crate) fn db_err(&self, e: sled::Error) -> StoreError {
        StoreError::from_db(e, &self.path)
    }

    /// Makes every acknowledged change durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| self.db_err(e))
    }

    /// Removes the remains of puts and removals that a crash interrupted.
    fn recover(&self) -> Result<()> {
        let mut rolled_back = 0;
        for item in self.pending.iter() {
            let (k, _) = item.map_err(|e| self.db_err(e))?;
            let handle = decode_u64("pending handle", &k).map_err(StoreError::Corrupt)?;
            self.delete_handle_data(handle)?;
            self.pending.remove(&k).map_err(|e| self.db_err(e))?;
            rolled_back += 1;
        }
        if rolled_back > 0 {
            self.flush()?;
            tracing::info!(rolled_back, "finished interrupted puts and removals");
        }
        Ok(())
    }

    /// Deletes every block and shard record of a local handle.
    fn delete_handle_data(&self, handle: u64) -> Result<()> {
        let prefix = handle.to_be_bytes();
        for tree in [&self.blocks, &self.shards] {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in tree.scan_prefix(prefix) {
                let (k, _) = item.map_err(|e| self.db_err(e))?;
                batch.remove(k);
                n += 1;
                if n % 4096 == 0 {
                    tree.apply_batch(std::mem::take(&mut batch)).map_err(|e| self.db_err(e))?;
                }
            }
            tree.apply_batch(batch).map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }

    fn counter(&self, key: &[u8]) -> Result<u64> {
        match self.counters.get(key).map_err(|e| self.db_err(e))? {
            None => Ok(0),
            Some(v) => decode_u64("counter", &v).map_err(StoreError::Corrupt),
        }
    }

    /// Current space accounting.
    pub fn usage(&self) -> Result<Usage> {
        let used = self.counter(USED)?;
        Ok(Usage {
            used_bytes: used,
            capacity_bytes: self.capacity,
            free_bytes: self.capacity.saturating_sub(used),
            objects: self.counter(OBJECTS)?,
            shards: self.counter(SHARDS)?,
        })
    }

    /// Allocates a fresh local handle and records it as pending, durably, before any data is written.
    fn begin(&self) -> Result<u64> {
        let next = self
            .counters
            .update_and_fetch(NEXT_HANDLE, |old| {
                let n = old.and_then(|v| decode_u64("next handle", v).ok()).unwrap_or(0) + 1;
                Some(n.to_be_bytes().to_vec())
            })
            .map_err(|e| self.db_err(e))?
            .ok_or_else(|| StoreError::Corrupt(DecodeError::new("next handle", "missing")))?;
        let handle = decode_u64("next handle", &next).map_err(StoreError::Corrupt)?;
        self.pending.insert(handle.to_be_bytes(), &[1u8][..]).map_err(|e| self.db_err(e))?;
        self.flush()?;
        Ok(handle)
    }

    /// Best-effort cleanup of an aborted put; `open` finishes it if this fails too.
    fn abort(&self, handle: u64) {
        let done = self
            .delete_handle_data(handle)
            .and_then(|_| self.pending.remove(handle.to_be_bytes()).map_err(|e| self.db_err(e)).map(|_| ()));
        if let Err(e) = done {
            tracing::warn!(handle, error = %e, "cleanup of an aborted put failed; it completes at next open");
        }
    }

    /// Reads an object's record.
    pub(crate) fn object_record(&self, id: &ObjectId) -> Result<ObjectRecord> {
        let v = self.objects.get(id.0).map_err(|e| self.db_err(e))?.ok_or(StoreError::NotFound(*id))?;
        ObjectRecord::decode(&v).map_err(StoreError::Corrupt)
    }

    /// The manifest of a stored object, or of one known only through the shards it holds.
    pub fn manifest(&self, id: &ObjectId) -> Result<Manifest> {
        let v = self.manifests.get(id.0).map_err(|e| self.db_err(e))?.ok_or(StoreError::NotFound(*id))?;
        Manifest::decode(&v).map_err(StoreError::Corrupt)
    }

    pub(crate) fn shard_meta(&self, handle: u64, shard: u16) -> Result<Option<ShardMeta>> {
        match self.shards.get(crate::records::shard_key(handle, shard)).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => ShardMeta::decode(&v).map(Some).map_err(StoreError::Corrupt),
        }
    }

    /// True if the store holds the whole object `id` (held shards alone do not count; see
    /// [`Store::has_shard`]).
    pub fn contains(&self, id: &ObjectId) -> Result<bool> {
        self.objects.contains_key(id.0).map_err(|e| self.db_err(e))
    }

    /// Lists committed objects in id order.
    pub fn list(&self) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for item in self.objects.iter() {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let rec = ObjectRecord::decode(&v).map_err(StoreError::Corrupt)?;
            let id = ObjectId(
                k.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt(DecodeError::new("object key", "not 32 bytes")))?,
            );
            let g = self.manifest(&id)?.geometry;
            out.push(ObjectInfo {
                id: id.to_hex(),
                size: g.size,
                data: g.data,
                parity: g.parity,
                stored_bytes: rec.stored_bytes,
                created_unix: rec.created_unix,
            });
        }
        Ok(out)
    }

    /// Removes an object: invisible and its bytes freed atomically, data deleted after. Its
    /// manifest stays while held shards of the object refer to it.
    pub fn remove(&self, id: &ObjectId) -> Result<u64> {
        let rec = self.object_record(id)?;
        let shards = self.shard_count_hint(id)?;
        (&self.objects, &self.held, &self.manifests, &self.counters, &self.pending)
            .transaction(|(objects, held, manifests, counters, pending)| {
                objects.remove(&id.0)?;
                if !held::any_held(held, id, shards)? {
                    manifests.remove(&id.0)?;
                }
                add_counter(counters, USED, -(rec.stored_bytes as i128))?;
                add_counter(counters, OBJECTS, -1)?;
                pending.insert(&rec.handle.to_be_bytes(), &[2u8][..])?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<StoreError>| StoreError::from(e))?;
        self.finish_removal(rec.handle)?;
        Ok(rec.stored_bytes)
    }

    /// Second half of a removal whose handle was marked pending in the unlinking transaction:
    /// makes that durable, then deletes the data. `open` finishes it after a crash.
    fn finish_removal(&self, handle: u64) -> Result<()> {
        self.flush()?;
        self.delete_handle_data(handle)?;
        self.pending.remove(handle.to_be_bytes()).map_err(|e| self.db_err(e))?;
        self.flush()
    }

    /// Makes a fully written object visible, in one transaction with its accounting.
    fn commit(&self, id: &ObjectId, manifest: &[u8], rec: &ObjectRecord) -> Result<()> {
        (&self.objects, &self.manifests, &self.counters, &self.pending)
            .transaction(|(objects, manifests, counters, pending)| {
                objects.insert(&id.0, rec.encode())?;
                manifests.insert(&id.0, manifest)?;
                add_counter(counters, USED, i128::from(rec.stored_bytes))?;
                add_counter(counters, OBJECTS, 1)?;
                pending.remove(&rec.handle.to_be_bytes())?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<StoreError>| StoreError::from(e))?;
        self.flush()
    }

    /// Reserves `needed` bytes against the capacity until the guard drops.
    fn reserve(&self, needed: u64) -> Result<Reservation<'_>> {
        let used = self.counter(USED)?;
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        let free = self.capacity.saturating_sub(used.saturating_add(*reserved));
        if needed > free {
            return Err(StoreError::Capacity { needed, free, capacity: self.capacity });
        }
        // Puts in flight have not hit the disk yet either, so budget for them too.
        let on_disk = needed.saturating_add(*reserved).saturating_mul(DISK_BYTES_PER_STORED_BYTE);
        if let Some(free) = disk_free_bytes(&self.path)
            && free < on_disk.saturating_add(self.disk_reserve)
        {
            return Err(StoreError::DiskSpace {
                path: self.path.clone(),
                needed: on_disk,
                free,
                reserve: self.disk_reserve,
            });
        }
        *reserved += needed;
        Ok(Reservation { store: self, bytes: needed })
    }

    /// Bytes the database occupies on disk, as `du` counts them (allocated blocks).
    pub fn disk_allocated_bytes(&self) -> u64 {
        allocated_bytes(&self.path)
    }
}

struct Reservation<'a> {
    store: &'a Store,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut r = self.store.reserved.lock().unwrap_or_else(|p| p.into_inner());
        *r = r.saturating_sub(self.bytes);
    }
}

fn add_counter(
    t: &TransactionalTree,
    key: &[u8],
    delta: i128,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let old = match t.get(key)? {
        None => 0,
        Some(v) => decode_u64("counter", &v)
            .map_err(|e| ConflictableTransactionError::Abort(StoreError::Corrupt(e)))?,
    };
    let new = i128::from(old) + delta;
    let new = u64::try_from(new).map_err(|_| {
        ConflictableTransactionError::Abort(StoreError::Corrupt(DecodeError::new(
            "counter",
            format!("{} would become {new}", String::from_utf8_lossy(key)),
        )))
    })?;
    t.insert(key, &new.to_be_bytes())?;
    Ok(())
}

/// Opens sled, waiting briefly when the lock is held: sled's I/O threads keep the file (and its
/// lock) open for a moment after a `Store` in this process is dropped, so an immediate reopen
/// can see `Locked` although nobody uses the store. Another process holding it still gets
/// `Locked`, after the wait.
fn open_db(cfg: &StoreConfig) -> Result<sled::Db> {
    const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(&cfg.path)
            .cache_capacity(cfg.cache_bytes)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| open_error(e, &cfg.path));
        match opened {
            Err(StoreError::Locked { .. }) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

fn open_error(e: sled::Error, path: &Path) -> StoreError {
    if let sled::Error::Io(io) = &e {
        if matches!(io.raw_os_error(), Some(libc::EAGAIN)) || io.to_string().contains("lock") {
            return StoreError::Locked { path: path.to_owned() };
        }
        if is_disk_full(io) {
            return StoreError::DiskFull { path: path.to_owned() };
        }
        return StoreError::Open {
            path: path.to_owned(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        };
    }
    StoreError::Db(e)
}

/// Free bytes on the filesystem holding `path`, if it can be asked.
pub fn disk_free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so the struct is initialised.
    #[allow(unsafe_code)]
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Allocated bytes of every file under `dir` (512-byte blocks, as `du` counts them).
pub fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

/// Stripes processed together per batch for objects of geometry `g` (at least one).
fn stripes_per_batch(g: &Geometry) -> u64 {
    (BATCH_BYTES / u64::from(g.stripe_size)).max(1)
}

/// The Reed-Solomon coder for a (validated) geometry.
fn coder(g: &Geometry) -> Result<ReedSolomon> {
    ReedSolomon::new(usize::from(g.data), usize::from(g.parity))
        .map_err(|e| StoreError::Params(DecodeError::new("erasure coding", format!("{e:?}"))))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
