//! Criterion micro-benchmarks of the store's hot paths: hashing a block, encoding a stripe, and a
//! durable put and a verified get through a real store. `bigfile_storage::bench::run` measures the
//! same paths at full size against plain-file baselines; these are for spotting regressions.
//!
//! Samples are few and short so that `cargo bench -p bigfile-storage` ends in about a minute.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bigfile_storage::bench::pseudo_random;
use bigfile_storage::merkle;
use bigfile_storage::{ObjectId, PutParams, Store, StoreConfig};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use reed_solomon_erasure::galois_8::ReedSolomon;

/// A benchmark group with few, short samples.
fn short<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g
}

fn hashing(c: &mut Criterion) {
    let block = pseudo_random(64 << 10, 1);
    let mut g = short(c, "merkle");
    g.throughput(Throughput::Bytes(block.len() as u64));
    // 64 segments of 1 KiB: a subtree of height 6.
    g.bench_function("subtree_root/64KiB-block", |b| {
        b.iter(|| merkle::subtree_root(black_box(&block), 1024, 6))
    });
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let (k, m) = (4, 2);
    let stripe = pseudo_random(1 << 20, 2);
    let piece = stripe.len() / k;
    let rs = ReedSolomon::new(k, m).expect("4 + 2 shards are valid");
    let mut parity = vec![vec![0u8; piece]; m];
    let mut g = short(c, "reed_solomon");
    g.throughput(Throughput::Bytes(stripe.len() as u64));
    g.bench_function("encode/1MiB-stripe-4+2", |b| {
        b.iter(|| {
            let data: Vec<&[u8]> = stripe.chunks(piece).collect();
            rs.encode_sep(&data, &mut parity).expect("shard sizes match");
            black_box(&parity);
        })
    });
    g.finish();
}

fn store(c: &mut Criterion) {
    const SIZE: usize = 8 << 20;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(&StoreConfig {
        path: dir.path().join("store"),
        capacity: u64::MAX,
        block_size: 64 << 10,
        cache_bytes: 64 << 20,
        disk_reserve: 0,
    })
    .expect("open the store");
    let params = PutParams { data: 4, parity: 2, stripe_size: 1 << 20, segment_size: 1024 };
    let object = pseudo_random(SIZE, 3);
    let put = |s: &Store| {
        let r = s.put(&mut &object[..], SIZE as u64, params, &mut |_| {}).expect("put");
        ObjectId::from_hex(&r.id).expect("a valid id")
    };

    let mut g = short(c, "store");
    g.sampling_mode(SamplingMode::Flat).throughput(Throughput::Bytes(SIZE as u64));
    // A second put of the same bytes would be deduplicated, so each timed put is removed untimed.
    g.bench_function("put/8MiB-4+2", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let id = put(&store);
                total += start.elapsed();
                store.remove(&id).expect("remove");
            }
            total
        })
    });
    let id = put(&store);
    let mut out = Vec::with_capacity(SIZE);
    g.bench_function("get/8MiB-4+2", |b| {
        b.iter(|| {
            out.clear();
            store.get(&id, &mut out, &mut |_| {}).expect("get");
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, hashing, encoding, store);
criterion_main!(benches);
