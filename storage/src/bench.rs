//! `bench storage`: the store measured against the plain operation each of its paths is built on.
//!
//! Every headline figure is a ratio, higher is better for the store, so that it means the same on
//! any machine: erasure coding against `memcpy`, a durable put against `write_all` + `sync_all`, a
//! degraded get against an intact one, and a scrub against a cold sequential file read. Absolute
//! throughputs are reported beside them in MB/s (10^6 bytes per second).
//!
//! Everything runs in a scratch directory on the disk being measured. Before each get and before
//! the scrub the OS page cache of the store's files is dropped (`posix_fadvise(DONTNEED)` after a
//! flush), as it is for the raw file that is read back, so both sides read from the disk; only
//! sled's own page cache (64 MiB here) may still hold recently written blocks.

use std::fs::File;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::{DecodeError, Result, StoreError, is_disk_full};
use crate::manifest::{Geometry, ObjectId};
use crate::merkle::keccak256;
use crate::store::{PutParams, Store, StoreConfig};

/// Subdirectory of the scratch directory that holds the benchmark's store.
const STORE_DIR: &str = "bench-store";
/// The plain file written and read back as the baseline.
const RAW_FILE: &str = "bench-raw.bin";
/// Bytes hashed by the keccak measurement.
const KECCAK_BYTES: usize = 64 << 20;
/// Repetitions of the in-memory measurements; the fastest counts.
const CPU_RUNS: usize = 3;

/// What to measure and where.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Scratch directory on the disk to measure. Created if missing; everything the benchmark
    /// writes under it (and the directory itself, if the benchmark created it) is removed at the
    /// end, on error too. A `bench-store` left there by an interrupted run is removed first.
    pub dir: PathBuf,
    /// Size of the test object; it is held in memory twice.
    pub object_bytes: u64,
    /// Data shards (k).
    pub data: u16,
    /// Parity shards (m); that many data shards are destroyed for the degraded get.
    pub parity: u16,
    /// Requested stripe size (rounded up to a multiple of k, as the store does).
    pub stripe_size: u32,
    /// Proof segment size.
    pub segment_size: u32,
    /// Store block size.
    pub block_size: u32,
}

impl BenchOptions {
    /// The defaults: a 256 MiB object, k = 4, m = 2, 1 MiB stripes, 1 KiB segments, 64 KiB blocks.
    pub fn new(dir: PathBuf) -> Self {
        BenchOptions {
            dir,
            object_bytes: 256 << 20,
            data: 4,
            parity: 2,
            stripe_size: 1 << 20,
            segment_size: 1024,
            block_size: 64 << 10,
        }
    }
}

/// Results of one run. Ratios are store throughput ÷ baseline throughput (higher is better);
/// `*_mb_s` are absolute throughputs in object bytes per second unless said otherwise.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// Reed-Solomon encode ÷ `memcpy` of the same bytes, both on one thread (the store encodes
    /// stripes on every core).
    pub encode_vs_memcpy: f64,
    /// Durable `Store::put` ÷ `write_all` + `sync_all` of the object to a fresh file.
    pub put_vs_fsync: f64,
    /// As `put_vs_fsync` but in bytes written: the put's shard bytes (parity included) per
    /// second ÷ the raw write of that many bytes.
    pub put_vs_fsync_stored: f64,
    /// `Store::get` with m data shards destroyed ÷ intact `Store::get`. Both time the whole call,
    /// which for the degraded get includes rewriting the repaired blocks after the output.
    pub reconstruct_vs_intact: f64,
    /// `Store::scrub_pass` shard bytes per second ÷ cold sequential read of a file that size.
    pub scrub_vs_read: f64,
    /// Object size.
    pub object_bytes: u64,
    /// Shard bytes the store wrote for it (all k + m shards).
    pub stored_bytes: u64,
    /// Single-thread Reed-Solomon encode.
    pub encode_mb_s: f64,
    /// Single-thread `memcpy` into a preallocated buffer.
    pub memcpy_mb_s: f64,
    /// Durable put, object bytes.
    pub put_mb_s: f64,
    /// Durable put, shard bytes.
    pub put_stored_mb_s: f64,
    /// `write_all` + `sync_all` of `object_bytes` to a fresh file.
    pub raw_write_mb_s: f64,
    /// `write_all` + `sync_all` of `stored_bytes` to a fresh file.
    pub raw_write_stored_mb_s: f64,
    /// Get of the intact object.
    pub get_intact_mb_s: f64,
    /// Get with m data shards destroyed, whole call (output and block repair).
    pub get_reconstruct_mb_s: f64,
    /// Get with m data shards destroyed, until the output was complete (before repair).
    pub get_reconstruct_output_mb_s: f64,
    /// Scrub, shard bytes verified.
    pub scrub_mb_s: f64,
    /// Cold sequential read of a plain file of `stored_bytes`.
    pub raw_read_mb_s: f64,
    /// Single-thread keccak256 over 64 MiB.
    pub keccak_mb_s: f64,
    /// Bytes the store occupies on disk (as `du` counts) per shard byte held, after both puts.
    pub allocated_per_stored_byte: f64,
    /// Cores available to the process.
    pub cores: usize,
}

/// Runs the benchmark; `progress` receives one line per finished measurement.
///
/// Needs about twice `object_bytes` of memory and three times `object_bytes` of disk.
pub fn run(opts: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let size = usize::try_from(opts.object_bytes)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| params("object size", "must be at least one byte and fit in memory"))?;
    let scratch = Scratch::create(&opts.dir)?;
    measure(opts, size, &scratch.dir, progress)
    // `scratch` is dropped here, after `measure` has closed the store, and removes everything.
}

fn measure(
    opts: &BenchOptions,
    size: usize,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    let put_params = PutParams {
        data: opts.data,
        parity: opts.parity,
        stripe_size: opts.stripe_size,
        segment_size: opts.segment_size,
    };
    let store_dir = dir.join(STORE_DIR);
    let store = Store::open(&StoreConfig {
        path: store_dir.clone(),
        capacity: u64::MAX,
        block_size: opts.block_size,
        cache_bytes: 64 << 20,
        disk_reserve: 0,
    })?;
    let object = opts.object_bytes as f64;
    let mut data = vec![0u8; size];
    fill_random(&mut data, 0x9e37_79b9_7f4a_7c15);

    // The put comes first: it validates the parameters before anything else runs on them.
    let start = Instant::now();
    let put = store.put(&mut &data[..], opts.object_bytes, put_params, &mut |_| {})?;
    let put_secs = start.elapsed().as_secs_f64();
    let stored = put.stored_bytes as f64;
    let put_mb_s = say(progress, "put", object, put_secs);
    let put_stored_mb_s = stored / put_secs.max(1e-9) / 1e6;
    let raw_path = dir.join(RAW_FILE);
    let raw = write_file(&raw_path, &data, opts.object_bytes)?;
    let raw_write_mb_s = say(progress, "write_all + sync_all", object, raw);
    let raw = write_file(&raw_path, &data, put.stored_bytes)?;
    let raw_write_stored_mb_s = say(progress, "the same, stored size", stored, raw);

    let mut dst = vec![0u8; size];
    let memcpy = best_of(|| {
        dst.copy_from_slice(black_box(&data));
        black_box(&mut dst);
        Ok(())
    })?;
    let memcpy_mb_s = say(progress, "memcpy", object, memcpy);
    let stripe = Geometry::round_stripe(opts.stripe_size, opts.data);
    let encode = best_of(|| encode(&data, opts.data, opts.parity, stripe))?;
    let encode_mb_s = say(progress, "Reed-Solomon encode", object, encode);
    let chunk = size.min(1 << 20);
    let hashed = (KECCAK_BYTES / chunk * chunk) as f64;
    let keccak = best_of(|| hash(&data, chunk))?;
    let keccak_mb_s = say(progress, "keccak256", hashed, keccak);

    let a = ObjectId::from_hex(&put.id).map_err(StoreError::Corrupt)?;
    let (intact, _, _) = timed_get(&store, &a, &mut dst, &data)?;
    let get_intact_mb_s = say(progress, "get (intact)", object, intact);

    // A second object, so that the repair the degraded get performs helps nothing measured later.
    fill_random(&mut data, 0x2545_f491_4f6c_dd1d);
    let b_put = store.put(&mut &data[..], opts.object_bytes, put_params, &mut |_| {})?;
    store.flush()?;
    let used = store.usage()?.used_bytes.max(1) as f64;
    let allocated_per_stored_byte = store.disk_allocated_bytes() as f64 / used;
    progress(&format!("allocated per stored byte: {allocated_per_stored_byte:.2}"));
    let b = ObjectId::from_hex(&b_put.id).map_err(StoreError::Corrupt)?;
    for shard in 0..opts.parity.min(opts.data) {
        store.damage_shard_inner(&b, shard, false)?;
    }
    let (whole, output, rebuilt) = timed_get(&store, &b, &mut dst, &data)?;
    if rebuilt == 0 {
        return Err(corrupt("destroyed shards went unnoticed"));
    }
    let get_reconstruct_mb_s = say(progress, "get (m data shards lost)", object, whole);
    store.remove(&b)?;

    // The scrub then covers exactly object A, `stored_bytes` like the raw file read below.
    store.flush()?;
    drop_cache(&store_dir);
    let start = Instant::now();
    let scrub = store.scrub_pass(None, &|| false, &mut |_| {})?;
    let scrub_secs = start.elapsed().as_secs_f64();
    let scrub_mb_s = say(progress, "scrub", scrub.bytes as f64, scrub_secs);
    let raw_read_mb_s = say(progress, "cold read", stored, read_file(&raw_path)?);

    Ok(BenchReport {
        encode_vs_memcpy: encode_mb_s / memcpy_mb_s,
        put_vs_fsync: put_mb_s / raw_write_mb_s,
        put_vs_fsync_stored: put_stored_mb_s / raw_write_stored_mb_s,
        reconstruct_vs_intact: get_reconstruct_mb_s / get_intact_mb_s,
        scrub_vs_read: scrub_mb_s / raw_read_mb_s,
        object_bytes: opts.object_bytes,
        stored_bytes: put.stored_bytes,
        encode_mb_s,
        memcpy_mb_s,
        put_mb_s,
        put_stored_mb_s,
        raw_write_mb_s,
        raw_write_stored_mb_s,
        get_intact_mb_s,
        get_reconstruct_mb_s,
        get_reconstruct_output_mb_s: object / output.max(1e-9) / 1e6,
        scrub_mb_s,
        raw_read_mb_s,
        keccak_mb_s,
        allocated_per_stored_byte,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// Owns the scratch directory and removes what the benchmark wrote there when dropped.
struct Scratch {
    dir: PathBuf,
    created: bool,
}

impl Scratch {
    fn create(dir: &Path) -> Result<Self> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let scratch = Scratch { dir: dir.to_owned(), created };
        scratch.clean();
        Ok(scratch)
    }

    fn clean(&self) {
        let (store, raw) = (self.dir.join(STORE_DIR), self.dir.join(RAW_FILE));
        for (path, res) in [(&store, std::fs::remove_dir_all(&store)), (&raw, std::fs::remove_file(&raw))] {
            match res {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove benchmark data")
                }
                _ => {}
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.clean();
        if self.created {
            // Only if empty: anything else placed there is not ours to delete.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Reports `bytes` in `secs` to `progress` and returns it in MB/s (zero time counts as 1 ns).
fn say(progress: &mut dyn FnMut(&str), what: &str, bytes: f64, secs: f64) -> f64 {
    let mb_s = bytes / secs.max(1e-9) / 1e6;
    progress(&format!("{what}: {mb_s:.0} MB/s"));
    mb_s
}

/// Seconds of the fastest of `CPU_RUNS` runs.
fn best_of(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..CPU_RUNS {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Fills `buf` with xorshift64 output derived from `seed`: deterministic, incompressible, and
/// fast enough not to matter. Tests and benches use it too.
pub fn fill_random(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// `len` bytes of [`fill_random`] output.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill_random(&mut v, seed);
    v
}

/// Encodes `data` stripe by stripe exactly as the store cuts it, on one thread.
fn encode(data: &[u8], k: u16, m: u16, stripe: u32) -> Result<()> {
    let (k, m, stripe) = (usize::from(k), usize::from(m), stripe as usize);
    let coding = |e: reed_solomon_erasure::Error| params("erasure coding", format!("{e:?}"));
    let rs = ReedSolomon::new(k, m).map_err(coding)?;
    let mut parity = vec![vec![0u8; stripe / k]; m];
    let mut padded = Vec::new();
    for chunk in data.chunks(stripe) {
        let piece = chunk.len().div_ceil(k);
        let src = if piece * k == chunk.len() {
            chunk
        } else {
            // The short last stripe: zero-pad the last piece, as the store does.
            padded.clear();
            padded.extend_from_slice(chunk);
            padded.resize(piece * k, 0);
            &padded[..]
        };
        let pieces: Vec<&[u8]> = src.chunks(piece).collect();
        let mut out: Vec<&mut [u8]> = parity.iter_mut().map(|p| &mut p[..piece]).collect();
        rs.encode_sep(&pieces, &mut out).map_err(coding)?;
    }
    black_box(&parity);
    Ok(())
}

/// Hashes `KECCAK_BYTES / chunk` slices of `chunk` bytes, cycling over `data`.
fn hash(data: &[u8], chunk: usize) -> Result<()> {
    for i in 0..KECCAK_BYTES / chunk {
        let off = (i * chunk) % (data.len() - chunk + 1);
        black_box(keccak256(black_box(&data[off..off + chunk])));
    }
    Ok(())
}

/// Drops the page cache of `file`; the kernel keeps dirty pages, so flush or sync first.
fn fadvise_dontneed(file: &File) {
    // SAFETY: the descriptor is open for the whole call, and posix_fadvise only advises the kernel
    // about the file's page cache; it reads or writes no memory of this process. Its result is
    // advice only, so a failure is ignored.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Drops the page cache of every file under `dir`.
fn drop_cache(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            drop_cache(&path);
        } else if let Ok(f) = File::open(&path) {
            fadvise_dontneed(&f);
        }
    }
}

fn params(what: &'static str, why: impl Into<String>) -> StoreError {
    StoreError::Params(DecodeError::new(what, why))
}

fn corrupt(why: &'static str) -> StoreError {
    StoreError::Corrupt(DecodeError::new("benchmark", why))
}

fn io_error(path: &Path, e: io::Error) -> StoreError {
    if is_disk_full(&e) { StoreError::DiskFull { path: path.to_owned() } } else { StoreError::Output(e) }
}

/// Seconds to create a fresh `path` and write `len` bytes (cycling over `data`) durably.
fn write_file(path: &Path, data: &[u8], len: u64) -> Result<f64> {
    let _ = std::fs::remove_file(path);
    let start = Instant::now();
    let mut f = File::create(path).map_err(|e| io_error(path, e))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(data.len() as u64) as usize;
        f.write_all(&data[..n]).map_err(|e| io_error(path, e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| io_error(path, e))?;
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds to read `path` sequentially after dropping it from the page cache.
fn read_file(path: &Path) -> Result<f64> {
    let mut f = File::open(path).map_err(StoreError::Input)?;
    fadvise_dontneed(&f);
    let mut buf = vec![0u8; 4 << 20];
    let start = Instant::now();
    while f.read(&mut buf).map_err(StoreError::Input)? > 0 {}
    Ok(start.elapsed().as_secs_f64())
}

/// Gets `id` into `dst` from a cold page cache and checks it equals `expect`. Returns the seconds
/// of the whole call and the seconds until the output was complete (`get` flushes its output
/// before repairing damaged blocks), and the stripes it rebuilt.
fn timed_get(store: &Store, id: &ObjectId, dst: &mut [u8], expect: &[u8]) -> Result<(f64, f64, u64)> {
    store.flush()?;
    drop_cache(store.path());
    let mut out = TimedWriter(io::Cursor::new(dst), None);
    let start = Instant::now();
    let report = store.get(id, &mut out, &mut |_| {})?;
    let whole = start.elapsed().as_secs_f64();
    let output = out.1.map_or(whole, |t| (t - start).as_secs_f64());
    if out.0.position() != expect.len() as u64 || out.0.get_ref()[..] != expect[..] {
        return Err(corrupt("get returned other bytes than were put"));
    }
    Ok((whole, output, report.stripes_reconstructed))
}

/// Writes into a preallocated slice and notes when it was flushed.
struct TimedWriter<'a>(io::Cursor<&'a mut [u8]>, Option<Instant>);

impl Write for TimedWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.1 = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dir: PathBuf, object_bytes: u64) -> BenchReport {
        let opts = BenchOptions { object_bytes, ..BenchOptions::new(dir.clone()) };
        let report = run(&opts, &mut |l| println!("{l}")).unwrap();
        println!("{report:#?}");
        for r in [
            report.encode_vs_memcpy,
            report.put_vs_fsync,
            report.put_vs_fsync_stored,
            report.reconstruct_vs_intact,
            report.scrub_vs_read,
            report.allocated_per_stored_byte,
        ] {
            assert!(r.is_finite() && r > 0.0, "{report:?}");
        }
        assert_eq!(report.stored_bytes, object_bytes.div_ceil(4) * 6, "{report:?}");
        assert!(!dir.exists(), "scratch dir left behind");
        report
    }

    #[test]
    fn bench_small_object_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        // Not a multiple of the stripe, so the short last stripe is exercised too.
        check(tmp.path().join("scratch"), (4 << 20) + 12345);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn bench_leaves_an_existing_dir_and_its_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep"), b"not ours").unwrap();
        let opts = BenchOptions { object_bytes: 1 << 20, ..BenchOptions::new(tmp.path().into()) };
        run(&opts, &mut |_| {}).unwrap();
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["keep"]);
    }

    /// The full-size run: `cargo test -p bigfile-storage --release bench_default -- --ignored --nocapture`.
    #[test]
    #[ignore = "writes about 1 GiB and takes tens of seconds"]
    fn bench_default_size() {
        let tmp =
            tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/tmp".into())).unwrap();
        check(tmp.path().join("scratch"), BenchOptions::new(PathBuf::new()).object_bytes);
    }
}
